"""An analytic estimate of ANE latency and peak memory from the MIL program. An estimate, not
a measurement: nothing here ran on a device.

    latency = DISPATCH_US + Σ_ops t(op)
    t(op on the ANE)  = op_overhead_us + max(flops / (rate · efficiency), activation bytes / bw
                                             + weight bytes / dram)
    t(op off the ANE) = SWITCH_US + flops / cpu rate + bytes / dram
    bw = the on-chip rate when the op's activations (last axis padded to 64 bytes) fit the cache,
         else the DRAM rate; efficiency = channels_last_efficiency for a projection or product
         on a channels-last (B, S, C) layout (rule ``channels_last_linear``), else 1; the max(…)
         of an op the ANE cannot split (rules ``UNSPLIT_RULES``) divided by unsplit_efficiency.

Peak memory = weights + the largest sum of live activations (padded) along the program order.

Weights count as stored: a palettized or quantized weight (a ``constexpr_*`` op) at the size of
its compressed data, both in memory and in the bytes an op reads. Source: coremltools'
"Palettization Overview" and "Performance" guides — palettization "reduces the amount of data
to be moved during prediction", a latency benefit for memory-bound models available when the
weights are "decompressed just in time for computation", which "starting with iOS17/macOS14 is
more likely to happen for models running primarily on the Neural Engine"
(apple.github.io/coremltools/docs-guides/source/opt-palettization-perf.html). So the estimate
is that of a current OS; on iOS 16, where weights are decompressed at load, it is optimistic.

The hardware figures (chip profiles, dispatch and switch costs) are facts of
``ane_rewrite.hardware``, with their sources (docs/ane.md, public specs); the estimator's own
numbers are in this file, but for FITTED (``hardware.ESTIMATOR_FIT``, which the passes read to
tell whether a rewrite pays). The three parameters in FITTED were solved so that the estimate
reproduces Apple's two published DistilBERT points on iPhone 13 Pro Max (A15): at seq 128,
batch 1, 9.89 ms for the model as is and 3.48 ms for the ANE-optimised form (our rewritten
export stands in for Apple's hand port: same op mix); at seq 512, batch 8, 10× between them.
``benchmarks/calibrate.py`` reruns the fit. unsplit_efficiency came out at 0.046, near 1/16 —
one of the A15's 16 ANE cores — which is what "work that cannot be split across the cores"
would predict; that is a plausibility check, not a measurement.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..coreml.mil import MilOp
from ..hardware import DISPATCH_US, ESTIMATOR_FIT, SWITCH_US, ChipProfile
from .program import Program, nbytes

FITTED = dict(ESTIMATOR_FIT)  # solved by benchmarks/calibrate.py (kept in hardware: the passes read it)
# One large intermediate for every head at once, or a softmax over a spatial axis: work the
# ANE cannot split across its cores nor keep on chip (docs/ane.md#principles, 2; placement rules:
# softmax over a spatial axis). Their time is divided by ``unsplit_efficiency``.
UNSPLIT_RULES = ("batched_attention", "softmax_axis")


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


def op_time_us(op: MilOp, prog: Program, chip: ChipProfile, off_ane: bool, channels_last: bool,
               fitted: dict = FITTED, unsplit: bool = False) -> float:
    act, weights = _activations(op, prog)
    work = flops(op, prog)
    if off_ane:
        return SWITCH_US + work / (chip.cpu_gflops * 1e3) + (act + weights) / (chip.dram_gbps * 1e3)
    fits = act <= chip.cache_mib * 2**20
    bw = chip.onchip_gbps if fits else chip.dram_gbps
    rate = chip.ane_tflops * 1e6 * (fitted["channels_last_efficiency"] if channels_last else 1.0)
    busy = max(work / rate, act / (bw * 1e3) + weights / (chip.dram_gbps * 1e3))
    return fitted["op_overhead_us"] + (busy / fitted["unsplit_efficiency"] if unsplit else busy)


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

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def estimate(prog: Program, off_ane: set[str], channels_last: set[str], chip: ChipProfile,
             fitted: dict = FITTED, unsplit: set[str] = frozenset()) -> Estimate:
    """``off_ane``/``channels_last``/``unsplit``: names of the ops the placement rules flagged so
    (``unsplit``: rules ``UNSPLIT_RULES``); ``fitted``: the fitted parameters (``FITTED``; the
    calibration passes trial values)."""
    ane = cpu = 0.0
    for op in prog.ops:
        if op.type.startswith("const"):
            continue
        t = op_time_us(op, prog, chip, op.name in off_ane, op.name in channels_last, fitted, op.name in unsplit)
        if op.name in off_ane:
            cpu += t
        else:
            ane += t
    weights, peak = prog.weight_bytes, prog.peak_activations[0]
    return Estimate(chip.name, (DISPATCH_US + ane + cpu) / 1e3, ane / 1e3, cpu / 1e3, len(off_ane),
                    (weights + peak) / 2**20, peak / 2**20, weights / 2**20)
