"""The ANE placement rules as data: one table, each row with its source.

A rule reads one MIL op (with the program around it, ``Program``) and returns the reason it
applies, or None. Severities: ``error`` (conversion or compilation fails), ``off_ane`` (the op
runs on the CPU or GPU, with a transfer each way), ``slow`` (stays on the ANE, but slower or
larger than it needs to be). Every limit is a fact of ``ane_rewrite.hardware``; every rule's
source is a section of docs/ane.md (the table under "Placement rules", or a principle).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..coreml.mil import RESHAPE_FAMILY, MilOp, MilValue

from .. import hardware as hw
from ..hardware import ELEMENT_BYTES, touches_last_axis
from .program import Program, nbytes

PLACEMENT = f"{hw.DOC}#placement-rules"
PRINCIPLE = f"{hw.DOC}#principles"
PADDING_MIN_WASTE = 64 * 1024  # bytes: smaller padded tensors are not worth a finding
MATMULS = ("matmul", "linear", "conv", "einsum")


@dataclass(frozen=True)
class PlacementRule:
    id: str
    ops: tuple[str, ...]  # MIL op types the rule reads; () for every non-const op
    severity: str
    consequence: str
    source: str
    check: Callable[[MilOp, Program], str | None]


def _fp32(op, prog):
    wide = [o for o in op.outputs if o.dtype == "FLOAT32"]
    return f"fp32 output {wide[0].name} {list(wide[0].shape)}" if wide else None


def _integer(op, prog):
    for side, values in (("output", op.outputs), ("input", [prog.values[i] for i in op.inputs
                                                           if i in prog.values and not prog.is_const(i)])):
        ints = [v for v in values if v.dtype in hw.INTEGER_DTYPES]
        if ints:
            return f"{ints[0].dtype.lower()} {side} {ints[0].name} {list(ints[0].shape)}"
    return None


def _rotation(indices: tuple, n: int) -> int | None:
    """indices = a cyclic shift of range(n) by s (torch.roll's conversion) → s, else None."""
    if len(indices) != n or n == 0:
        return None
    s = (n - indices[0]) % n
    return s if all(indices[i] == (i - s) % n for i in range(n)) else None


def _gather(op, prog):
    x, idx = prog.arg(op, "x") or prog.arg(op, "data"), prog.arg(op, "indices")
    shape = list(x.shape) if x else "?"
    if op.type == "gather" and x is not None and prog.is_const(x.name) and x.rank == 2 \
            and idx is not None and prog.from_input(idx.name):
        return f"embedding lookup: {op.type} of a {shape} table by the input ids"
    indices = prog.producer.get(idx.name) if idx is not None else None
    axis = prog.const(op, "axis")
    if op.type == "gather" and indices is not None and indices.value is not None and x is not None \
            and isinstance(axis, int):
        s = _rotation(indices.value, x.shape[axis])
        if s:
            return (f"torch.roll: a gather that rotates axis {axis} of {shape} by {s} (coremltools "
                    "converts roll to gathers); two slices and a concat do it on the ANE "
                    "(ane_rewrite's windows pass)")
    return f"{op.type} of {shape}"


def _always(op, prog):
    return f"{op.type} has no ANE implementation"


def _rank(limit, op, prog):
    ranks = [o.rank for o in op.outputs]
    return f"rank-{max(ranks)} output {list(op.outputs[0].shape)}" if ranks and limit(max(ranks)) else None


def _large_dim(op, prog):
    for v in (*op.outputs, *(prog.values[i] for i in op.inputs if i in prog.values)):
        if any(d > hw.MAX_DIM for d in v.shape):
            return f"{v.name} {list(v.shape)} has a dimension > {hw.MAX_DIM}: split it"
    return None


def _padding(op, prog):
    for o in op.outputs:
        if o.rank and o.shape[-1] > 0:
            waste = nbytes(o, padded=True) - nbytes(o)
            if waste >= PADDING_MIN_WASTE and nbytes(o, padded=True) >= 2 * nbytes(o):
                return (f"last axis {o.shape[-1]} × {ELEMENT_BYTES.get(o.dtype, 4)} bytes pads to {hw.LAST_AXIS_ALIGN_BYTES}: "
                        f"{nbytes(o, True) / nbytes(o):.0f}× the memory of {list(o.shape)}")
    return None


def _conv_kernel(op, prog):
    w, dil = prog.arg(op, "weight"), prog.const(op, "dilations")
    if w is not None and w.rank == 5:
        return None  # conv3d: its own rule
    dil = dil if isinstance(dil, tuple) else (dil,) if dil else ()
    if any(d > 1 for d in dil):
        return f"dilation {list(dil)}"
    if w is not None and w.rank == 4 and w.shape[-1] > hw.MAX_CONV_KERNEL_WIDTH:
        return f"kernel width {w.shape[-1]} > {hw.MAX_CONV_KERNEL_WIDTH}"
    return None


def _conv3d(op, prog):
    w = prog.arg(op, "weight")
    return f"3-D convolution (weight {list(w.shape)})" if w is not None and w.rank == 5 else None


def _pool(op, prog):
    kernel, strides = prog.const(op, "kernel_sizes"), prog.const(op, "strides")
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) if kernel else ()
    strides = strides if isinstance(strides, tuple) else (strides,) if strides else ()
    if any(k > hw.MAX_POOL_KERNEL for k in kernel) or any(s > hw.MAX_POOL_STRIDE for s in strides):
        return f"kernel {list(kernel)}, strides {list(strides)}"
    return None


def _upsample(op, prog):
    scales = [prog.const(op, p) for p in ("scale_factor_height", "scale_factor_width")]
    scales = [s for s in scales if isinstance(s, (int, float))]
    return f"scale {max(scales)} > {hw.MAX_UPSAMPLE_SCALE}" if scales and max(scales) > hw.MAX_UPSAMPLE_SCALE else None


def _softmax_axis(op, prog):
    x, axis = prog.arg(op, "x"), prog.const(op, "axis")
    if x is None or x.rank < 3 or not isinstance(axis, int):
        return None
    axis %= x.rank
    if axis == 1:
        return None
    return (f"softmax over axis {axis} of {list(x.shape)}, not the channel axis: the work cannot be "
            "split; put the keys on dim 1")


def _batched_attention(op, prog):
    a, b = prog.arg(op, "x"), prog.arg(op, "y")
    if a is None or b is None or prog.is_const(a.name) or prog.is_const(b.name) or a.rank < 3:
        return None
    out = op.outputs[0]
    return (f"batched attention product {list(a.shape)} × {list(b.shape)} → {list(out.shape)} "
            f"({nbytes(out) / 2**20:.2f} MiB) for every head at once; split per head on (B, C, 1, S)")


def _channels_last_linear(op, prog):
    x = prog.arg(op, "x")
    if op.type == "matmul":
        w = prog.arg(op, "y")
        if w is None or not prog.is_const(w.name):
            return None
    if x is None or x.rank < 2 or (x.rank == 2 and x.shape[0] <= 1):
        return None  # a single vector (B = 1 classifier head) has no layout to get wrong
    form = "(B, S, C)" if x.rank >= 3 else "(B·S, C), tokens flattened,"
    return (f"{op.type} on {list(x.shape)}: channels last {form}; a 1×1 conv on (B, C, 1, S) "
            "is what the ANE runs natively")


def _layout_copy(op, prog):
    x, out = prog.arg(op, "x"), op.outputs[0]
    if x is None or x.rank == 0:
        return None
    if op.type == "transpose":
        perm = prog.const(op, "perm")
        perm = perm if isinstance(perm, tuple) else (perm,)
        if touches_last_axis(x.shape, out.shape, perm):
            return f"transpose {list(perm)} of {list(x.shape)} moves the last axis: a memory copy"
        return None
    if touches_last_axis(x.shape, out.shape):
        return f"{op.type} {list(x.shape)} → {list(out.shape)} changes the last axis: a memory copy"
    return None


def _blockwise(op, prog):
    return "per-block quantised weights"


RULES: tuple[PlacementRule, ...] = (
    PlacementRule("fp32", (), "off_ane", "runs off the ANE (the ANE computes in fp16)",
                  f"{PLACEMENT}: fp32 tensors", _fp32),
    PlacementRule("int_or_bool", (), "off_ane", "runs on the CPU (the ANE computes in fp16 only)",
                  f"{PLACEMENT}: integer or boolean tensors", _integer),
    PlacementRule("gather", hw.GATHER_OPS, "off_ane", "runs on the CPU",
                  f"{PLACEMENT}: gather, gather_nd, scatter*; roll: passes/windows.py", _gather),
    PlacementRule("control_flow", hw.CONTROL_FLOW_OPS, "off_ane", "runs on the CPU",
                  f"{PLACEMENT}: cond, while_loop", _always),
    PlacementRule("unsupported_op", hw.UNSUPPORTED_OPS,
                  "off_ane", "runs off the ANE", f"{PLACEMENT}: lstm, gru, rnn; topk, argsort, …", _always),
    PlacementRule("rank_above_5", (), "error", "Core ML rejects tensors of rank > 5",
                  f"{PLACEMENT}: rank > 5", lambda op, prog: _rank(lambda r: r > hw.MAX_RANK, op, prog)),
    PlacementRule("rank_5", (), "slow", "rank-5 tensors run slower than rank ≤ 4 (the ANE is 4-D)",
                  f"{PLACEMENT}: rank 5 is slower", lambda op, prog: _rank(lambda r: r == hw.MAX_RANK, op, prog)),
    PlacementRule(f"dim_above_{hw.MAX_DIM}", MATMULS + ("gather",), "off_ane", "off the ANE or a compile failure",
                  f"{PLACEMENT}: any dim > {hw.MAX_DIM}", _large_dim),
    PlacementRule("last_axis_padding", (), "slow", f"the last axis is padded to {hw.LAST_AXIS_ALIGN_BYTES} bytes in ANE buffers",
                  f"{PRINCIPLE}, 1 (data format)", _padding),
    PlacementRule("conv_kernel", ("conv",), "slow", "slow or a compile failure",
                  f"{PLACEMENT}: conv dilation > 1, kernel width > {hw.MAX_CONV_KERNEL_WIDTH}", _conv_kernel),
    PlacementRule("conv3d", ("conv",), "off_ane", "runs off the ANE", f"{PLACEMENT}: conv3d", _conv3d),
    PlacementRule("pooling", hw.POOL_OPS, "off_ane", "runs off the ANE",
                  f"{PLACEMENT}: pooling kernel > {hw.MAX_POOL_KERNEL}, stride > {hw.MAX_POOL_STRIDE}", _pool),
    PlacementRule("upsample", hw.UPSAMPLE_OPS, "off_ane", "runs off the ANE", f"{PLACEMENT}: upsample scale > {hw.MAX_UPSAMPLE_SCALE}",
                  _upsample),
    PlacementRule("blockwise_quantisation", hw.BLOCKWISE_QUANTISED_OPS, "off_ane",
                  "CPU fallback (per-channel quantisation is fine)", f"{PLACEMENT}: per-block quantised weights",
                  _blockwise),
    PlacementRule("softmax_axis", ("softmax",), "slow", "softmax over a spatial axis cannot be split",
                  f"{PLACEMENT}: softmax over a spatial axis; {PRINCIPLE}, 3", _softmax_axis),
    PlacementRule("batched_attention", ("matmul",), "slow",
                  "one large intermediate for all heads: spills out of the on-chip cache",
                  f"{PRINCIPLE}, 2 (chunk large intermediates)", _batched_attention),
    PlacementRule("channels_last_linear", ("linear", "matmul"), "slow",
                  "a projection on channels-last tokens instead of a 1×1 conv on (B, C, 1, S)",
                  f"{PRINCIPLE}, 1 (data format)", _channels_last_linear),
    PlacementRule("layout_copy", ("transpose",) + RESHAPE_FAMILY, "slow",
                  "a memory copy (it touches the last axis)", f"{PRINCIPLE}, 3 (minimise memory copies)",
                  _layout_copy),
)


def input_findings(inputs: list[MilValue]) -> list[tuple[MilValue, str]]:
    """Model inputs with flexible (unbounded) dimensions: the model runs on the CPU."""
    return [(v, f"input {v.name} {list(v.shape)} has a flexible dimension") for v in inputs
            if any(d < 0 for d in v.shape)]


FLEXIBLE_INPUT = PlacementRule("flexible_input", (), "off_ane", "flexible shapes run on the CPU "
                               "(enumerated shapes are fine)", f"{PLACEMENT}: inputs, flexible shapes",
                               lambda op, prog: None)
WEIGHTS_LIMIT = PlacementRule("weights_above_1GB", (), "error", "too large for one model file on iOS "
                              "(~3 GB on M1): chunk the model", f"{PLACEMENT}: whole model", lambda op, prog: None)
