"""An analytic estimate of ANE latency and peak memory from the MIL program. An estimate, not
a measurement: nothing here ran on a device.

Every op of the program becomes the work the latency model prices (``ane_rewrite.cost``: one
model for the analyzer and the passes): its kind, flops, activation bytes (last axis padded to
64 bytes), weight bytes as stored, and what the placement rules say of it — off the ANE,
a projection on channels-last tokens (rule ``channels_last_linear``), work the ANE cannot split
(rules ``UNSPLIT_RULES``). The model's parameters are fitted on published device measurements
(``benchmarks/published_latency.py``), and every latency carries their held-out error band
(``cost.BAND``).

Peak memory = weights + the largest sum of live activations (padded) along the program order.

Weights count as stored: a palettized or quantized weight (a ``constexpr_*`` op) at the size of
its compressed data, both in memory and in the bytes an op reads. Source: coremltools'
"Palettization Overview" and "Performance" guides — palettization "reduces the amount of data
to be moved during prediction", a latency benefit for memory-bound models available when the
weights are "decompressed just in time for computation", which "starting with iOS17/macOS14 is
more likely to happen for models running primarily on the Neural Engine"
(apple.github.io/coremltools/docs-guides/source/opt-palettization-perf.html). So the estimate
is that of a current OS; on iOS 16, where weights are decompressed at load, it is optimistic.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .. import cost
from ..coreml.mil import RESHAPE_FAMILY, MilOp
from ..hardware import ChipProfile, touches_last_axis
from .program import Program, nbytes

FITTED = dict(cost.FIT)
# One large intermediate for every head at once, or a softmax over a spatial axis: work the
# ANE cannot split across its cores nor keep on chip (docs/ane.md#principles, 2; placement rules:
# softmax over a spatial axis).
UNSPLIT_RULES = ("batched_attention", "softmax_axis")
COMPUTE_OPS = ("conv", "linear", "matmul", "einsum", "conv_transpose")
FREE_OPS = ("identity",)


def flops(op: MilOp, prog: Program) -> float:
    """Multiply-adds count twice; other ops one flop per output element."""
    out = op.outputs[0] if op.outputs else None
    if out is None or any(d < 0 for d in out.shape):
        return 0.0
    n = math.prod(out.shape)
    if op.type == "conv":
        w = prog.arg(op, "weight")
        return 2.0 * n * math.prod(w.shape[1:]) if w else n
    if op.type == "linear":
        w = prog.arg(op, "weight")
        return 2.0 * n * w.shape[-1] if w else n
    if op.type == "matmul":
        x, y = prog.arg(op, "x"), prog.arg(op, "y")
        if x is None or y is None or x.rank == 0:
            return n
        k = x.shape[-2] if prog.const(op, "transpose_x") and x.rank >= 2 else x.shape[-1]
        return 2.0 * n * k
    if op.type == "einsum":
        eq = prog.const(op, "equation")
        values = [prog.values.get(i) for i in op.params.get("values", ())]
        if isinstance(eq, str) and all(values):
            sizes = {}
            for term, v in zip(eq.split("->")[0].split(","), values):
                sizes.update(zip(term, v.shape))
            return 2.0 * math.prod(sizes.values())
        return n
    return float(n)


def _activations(op: MilOp, prog: Program) -> tuple[int, int]:
    """(activation bytes padded, weight bytes) an op reads and writes."""
    act = sum(nbytes(o, padded=True) for o in op.outputs)
    weights = 0
    if op.type in ("gather", "gather_nd", "gather_along_axis"):  # reads the rows it returns
        return act + sum(nbytes(o) for o in op.outputs), 0
    for name in op.inputs:
        v = prog.values.get(name)
        if v is None:
            continue
        if prog.is_const(name):  # a compressed weight is read at its stored size (see the docstring)
            weights += prog.stored_bytes(name) if v.rank >= 1 and math.prod(v.shape) > 64 else 0
        else:
            act += nbytes(v, padded=True)
    return act, weights


def _kind(op: MilOp, prog: Program) -> str:
    if op.type in COMPUTE_OPS:
        return "compute"
    x = prog.arg(op, "x")
    if op.type in FREE_OPS or (op.type in RESHAPE_FAMILY and x is not None and op.outputs
                               and not touches_last_axis(x.shape, op.outputs[0].shape)):
        return "view"  # a reshape that leaves the last axis alone moves nothing
    return "other"


def work(op: MilOp, prog: Program, off_ane: bool = False, channels_last: bool = False,
         unsplit: bool = False) -> cost.Work:
    """The work the latency model prices for one op of the program."""
    act, weights = _activations(op, prog)
    return cost.Work(_kind(op, prog), flops(op, prog), act, weights, off_ane, channels_last, unsplit)


def op_time_us(op: MilOp, prog: Program, chip: ChipProfile, off_ane: bool, channels_last: bool,
               fitted: dict = FITTED, unsplit: bool = False) -> float:
    w = work(op, prog, off_ane, channels_last, unsplit)
    return cost.cpu_time_us(w, chip, fitted) if off_ane else cost.ane_time_us(w, chip, fitted)


def works(prog: Program, off_ane: set[str], channels_last: set[str],
          unsplit: set[str] = frozenset()) -> list[cost.Work]:
    """The program's ops (consts left out) as the latency model's work, in program order."""
    return [work(op, prog, op.name in off_ane, op.name in channels_last, op.name in unsplit)
            for op in prog.ops if not op.type.startswith("const")]


@dataclass
class Estimate:
    chip: str
    latency_ms: float
    ane_ms: float
    off_ane_ms: float
    off_ane_ops: int
    peak_memory_mib: float
    peak_activation_mib: float
    weights_mib: float
    band: float = cost.BAND  # the latency's held-out error, a fraction (cost.BAND)

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def estimate(prog: Program, off_ane: set[str], channels_last: set[str], chip: ChipProfile,
             fitted: dict = FITTED, unsplit: set[str] = frozenset()) -> Estimate:
    """``off_ane``/``channels_last``/``unsplit``: names of the ops the placement rules flagged so
    (``unsplit``: rules ``UNSPLIT_RULES``); ``fitted``: the fitted parameters (``FITTED``; the
    fit passes trial values)."""
    return estimate_works(prog, works(prog, off_ane, channels_last, unsplit), [chip], fitted)[0]


def estimate_works(prog: Program, program_works: list[cost.Work], chips: list[ChipProfile],
                   fitted: dict = FITTED) -> list[Estimate]:
    """The estimates, one per chip, of a program already turned into work (``works``): its
    columns (``cost.as_arrays``) are made once for all the chips."""
    columns = cost.as_arrays(program_works)
    off_ops = sum(w.off_ane for w in program_works)
    weights, peak = prog.weight_bytes, prog.peak_activations[0]
    out = []
    for chip in chips:
        total, ane, off = cost.program_us(columns, chip, fitted)
        out.append(Estimate(chip.name, total / 1e3, ane / 1e3, off / 1e3, off_ops, (weights + peak) / 2**20,
                            peak / 2**20, weights / 2**20, cost.BAND))
    return out
