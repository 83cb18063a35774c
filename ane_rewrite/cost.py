"""The ANE latency model: what one op costs, from the work it does, and what one prediction costs.

One model, read by the analyzer (``analysis/estimate.py`` prices every op of an exported
program) and by the passes (``passes/_attention_cost.py`` prices two forms of one attention
before choosing), so the figures printed and the decisions taken cannot drift apart.

    latency    = inference_us + Σ_ANE t(op) + Σ_off t_cpu(op) + switch_us · (ANE ↔ CPU changes)
    t(op)      = op_us(kind) + max(flops / (peak · efficiency), act · copies / bw + weights / dram)
    t_cpu(op)  = flops / cpu_gflops + (act + weights) / dram_soc + act / transfer_gbps
    peak       = the chip's fp16 rate (``hardware.CHIPS``: marketed TOPS, fp16-equivalent)
    efficiency = conv_efficiency for convolutions and projections, product_efficiency for a
                 product of two activations (attention)
    copies     = 1, + channels_last_copies for a projection on channels-last tokens (B, S, C) (its
                 activations are laid out again on the way in and out), + unsplit_copies for work
                 the ANE cannot split across its cores (all heads' logits at once, a softmax over a
                 spatial axis: the whole tensor is moved again rather than kept in pieces)
    bw         = onchip_gbps_per_tops · the chip's TOPS when the op's activations (last axis
                 padded to 64 bytes) fit the on-chip cache, else dram
    dram       = min(the chip's DRAM bandwidth · dram_efficiency, ane_dram_gbps): what the ANE
                 reaches of the DRAM (its own port: the SoC's wider buses of the Pro and Max chips
                 serve the GPU); weights are always read from DRAM; dram_soc: the chip's DRAM
    transfer   an op off the ANE carries its activations across the boundary between the
               ANE's buffers and the CPU's (layout and precision converted) at transfer_gbps
    kinds      ``compute`` (conv, linear, matmul, einsum: op_us = compute_op_us), ``other``
                 (elementwise, reductions, softmax, norms, copies: other_op_us), ``view`` (a
                 reshape that leaves the last axis alone: free)

The chip figures are facts with sources (``hardware.CHIPS``). The parameters in ``FIT`` are
fitted — by ``benchmarks/published_latency.py``, on the published device measurements of
``benchmarks/published/latency.csv`` — with nothing fitted per model, family or source; each
has a prior (``PRIOR``: where it would sit without data) that the fit is pulled towards.
``BAND`` is the estimate's error measured leave-one-source-out (a fit that never saw the
source of the rows it is scored on): the figure printed beside every estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hardware import ChipProfile

KINDS = ("compute", "other", "view")

# Where each fitted parameter sits before any data (priors: docs/ane.md#hardware-priors), and
# the spread (a factor, one sigma) the fit may move it by at no cost.
PRIOR = {
    "inference_us": (90.0, 4.0),          # per prediction: a dispatch floor of 70–110 µs reported
    "compute_op_us": (2.0, 4.0),          # per conv / matmul / einsum
    "other_op_us": (1.0, 4.0),            # per elementwise or copy op (the ANE fuses many of them)
    "conv_efficiency": (0.5, 3.0),        # of the marketed rate; measured GEMM on M1 is 3–4 of 11 TOPS
    "product_efficiency": (0.5, 3.0),     # the penalties start neutral: no effect until the data show one
    "channels_last_copies": (1.0, 4.0),   # a projection on (B, S, C) moves its activations this many more times
    "unsplit_copies": (1.0, 8.0),         # work the ANE cannot split across its cores moves its tensor this many more times
    "onchip_gbps_per_tops": (40.0, 4.0),  # on-chip activation bandwidth, per TOPS of the engine
    "dram_efficiency": (0.7, 2.0),        # of the DRAM's spec bandwidth
    "ane_dram_gbps": (60.0, 3.0),         # the ANE's own reach to DRAM, whatever the SoC's buses (same engine in M1 … M1 Max)
    "switch_us": (50.0, 4.0),             # per change between the ANE and the CPU
    "cpu_gflops": (100.0, 10.0),          # what an op falling back to the CPU gets
    "transfer_gbps": (4.0, 10.0),         # activations carried between the ANE's buffers and the CPU's
}

# Fitted by benchmarks/published_latency.py (see its output, benchmarks/published/fit.json).
FIT = {
    "inference_us": 153.7,
    "compute_op_us": 1.392,
    "other_op_us": 0.7037,
    "conv_efficiency": 0.4791,
    "product_efficiency": 0.4404,
    "channels_last_copies": 0.982,
    "unsplit_copies": 1.57,
    "onchip_gbps_per_tops": 52.79,
    "dram_efficiency": 1.0,
    "ane_dram_gbps": 45.9,
    "switch_us": 49.62,
    "cpu_gflops": 99.68,
    "transfer_gbps": 1.288,
}

# The held-out error of an estimate: 90 % of the published measurements, each predicted by a
# fit that never saw its source, lie within ±BAND of it (benchmarks/published/fit.json).
BAND = 0.35
BAND_SOURCE = "benchmarks/published/fit.json (leave-one-source-out over benchmarks/published/latency.csv)"


@dataclass(frozen=True)
class Work:
    """What one op does, as the model prices it."""
    kind: str                 # one of KINDS
    flops: float = 0.0
    act_bytes: int = 0        # activations read and written, last axis padded
    weight_bytes: int = 0     # constants read, as stored
    off_ane: bool = False
    channels_last: bool = False
    unsplit: bool = False


def ane_time_us(w: Work, chip: ChipProfile, fit: dict = FIT) -> float:
    """An op on the ANE."""
    return float(ane_times_us(np.array([KINDS.index(w.kind)]), np.array([w.flops]), np.array([w.act_bytes]),
                              np.array([w.weight_bytes]), np.array([w.channels_last]), np.array([w.unsplit]),
                              chip, fit)[0])


def ane_times_us(kind, flops, act, weights, channels_last, unsplit, chip: ChipProfile, fit: dict = FIT):
    """``ane_time_us`` over arrays of ops (``kind``: indices into KINDS): the one formula, which
    the fit evaluates on thousands of ops at a time."""
    compute, view = kind == KINDS.index("compute"), kind == KINDS.index("view")
    efficiency = np.where(compute, np.where(weights > 0, fit["conv_efficiency"], fit["product_efficiency"]), 1.0)
    rate = chip.ane_tops * 1e6 * efficiency  # flops per µs
    dram = ane_dram_bytes_per_us(chip, fit)
    bw = np.where(act <= chip.cache_mib * 2**20, fit["onchip_gbps_per_tops"] * chip.ane_tops * 1e3, dram)
    copies = 1.0 + np.where(channels_last, fit["channels_last_copies"], 0.0) + np.where(unsplit, fit["unsplit_copies"], 0.0)
    moved = act * copies / bw + weights / dram
    overhead = np.where(compute, fit["compute_op_us"], fit["other_op_us"])
    return np.where(view, 0.0, overhead + np.maximum(flops / rate, moved))


def ane_dram_bytes_per_us(chip: ChipProfile, fit: dict = FIT) -> float:
    """What the ANE reads from DRAM per µs: the chip's bandwidth, at most the engine's own reach."""
    return min(chip.dram_gbps * fit["dram_efficiency"], fit["ane_dram_gbps"]) * 1e3


def ane_total_us(works: list[Work], chip: ChipProfile, fit: dict = FIT) -> float:
    """Σ ``ane_time_us`` over ops (all taken on the ANE), in one pass of the array form."""
    a = as_arrays(works)
    return float(ane_times_us(a["kind"], a["flops"], a["act_bytes"], a["weight_bytes"], a["channels_last"],
                              a["unsplit"], chip, fit).sum())


def cpu_time_us(w: Work, chip: ChipProfile, fit: dict = FIT) -> float:
    """An op off the ANE."""
    return cpu_times_us(w.flops, w.act_bytes, w.weight_bytes, chip, fit)


def cpu_times_us(flops, act, weights, chip: ChipProfile, fit: dict = FIT):
    """Its flops at the CPU's rate, its bytes from DRAM, and its activations carried across the
    boundary between the ANE's buffers and the CPU's at ``transfer_gbps``."""
    return flops / (fit["cpu_gflops"] * 1e3) + (act + weights) / (chip.dram_gbps * 1e3) + act / (fit["transfer_gbps"] * 1e3)


def switches(works: list[Work]) -> int:
    """Changes between the ANE and the CPU along the program order (views go with either)."""
    return _switches(as_arrays(works)["off_ane"])


def _switches(off_ane: np.ndarray) -> int:
    return int(np.count_nonzero(off_ane[1:] != off_ane[:-1]))


FIELDS = ("kind", "flops", "act_bytes", "weight_bytes", "off_ane", "channels_last", "unsplit")


def as_arrays(works: list[Work]) -> dict[str, np.ndarray]:
    """A program's work as columns (``FIELDS``; kinds as indices into KINDS, views dropped: they
    cost nothing and go with either side of a switch)."""
    kept = [w for w in works if w.kind != "view"]
    return {"kind": np.array([KINDS.index(w.kind) for w in kept], dtype=np.int8),
            **{f: np.array([getattr(w, f) for w in kept], dtype=float if f in ("flops", "act_bytes", "weight_bytes") else bool)
               for f in FIELDS[1:]}}


def latency_us(works: list[Work], chip: ChipProfile, fit: dict = FIT) -> tuple[float, float, float]:
    """(total, on the ANE, off the ANE) of one prediction, in µs; the switches count off the ANE."""
    return program_us(as_arrays(works), chip, fit)


def program_us(a: dict[str, np.ndarray], chip: ChipProfile, fit: dict = FIT) -> tuple[float, float, float]:
    """``latency_us`` of a program's columns (``as_arrays``)."""
    on, off = ~a["off_ane"], a["off_ane"]
    ane = float(ane_times_us(a["kind"][on], a["flops"][on], a["act_bytes"][on], a["weight_bytes"][on],
                             a["channels_last"][on], a["unsplit"][on], chip, fit).sum())
    cpu = float(cpu_times_us(a["flops"][off], a["act_bytes"][off], a["weight_bytes"][off], chip, fit).sum())
    cpu += fit["switch_us"] * _switches(off)
    return fit["inference_us"] + ane + cpu, ane, cpu


def band_text(band: float = BAND) -> str:
    """How an estimate's error is printed beside it."""
    return f"±{band * 100:.0f} % held-out"


def is_gain(speedup: float, band: float = BAND) -> bool:
    """A speed-up counts as a gain only when it exceeds the estimate's error band."""
    return speedup > 1.0 + band


def speedup_text(base_ms: float, new_ms: float, band: float = BAND) -> str:
    """'2.84×, a gain' or '1.20×, within the error band': a gain only beyond the band."""
    speedup = base_ms / new_ms
    verdict = ("a gain" if is_gain(speedup, band) else
               "slower beyond the band" if is_gain(1 / speedup, band) else "within the error band")
    return f"{speedup:.2f}×, {verdict}"
