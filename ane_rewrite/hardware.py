"""What the Apple Neural Engine is: the one module of hardware facts.

The passes (how far to chunk, which rank is native, what a mask may hold), the layout cost
(what a copy moves) and the analyzer (placement rules, estimates) read these and nothing else
about the hardware. Each fact names its source in ``SOURCES``: a section of ``docs/ane.md``,
which cites Apple's articles and repositories, coremltools and community measurements. Treat
every number as a prior to calibrate, not ground truth. This module imports nothing of
ane_rewrite.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DOC = "docs/ane.md"

# ── data format ───────────────────────────────────────────────────────────────────────────
ELEMENT_BYTES = {"FLOAT16": 2, "FLOAT32": 4, "INT32": 4, "INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2,
                 "FLOAT64": 8, "INT64": 8}  # MIL dtype → bytes per element
COMPUTE_BYTES = ELEMENT_BYTES["FLOAT16"]   # the ANE computes in fp16
INTEGER_DTYPES = ("INT32", "INT64", "INT16", "BOOL")  # computed in the graph: on the CPU
LAST_AXIS_ALIGN_BYTES = 64                 # the last axis of an ANE buffer is padded to this
ALIGNED_LAST_AXIS = LAST_AXIS_ALIGN_BYTES // COMPUTE_BYTES  # fp16 elements: 32
NATIVE_RANK = 4                            # (B, C, H, W): the ANE is 4-D
MAX_RANK = 5                               # rank 5 runs, slower; Core ML rejects rank > 5
MAX_DIM = 16384                            # matmul/conv/embedding dims above this leave the ANE
ON_CHIP_CACHE_MIB = 4.0                    # M1's on-chip buffer for activations

# ── fp16 numerics ─────────────────────────────────────────────────────────────────────────
MASKED_LOGIT = -1e4                        # an additive mask value that stays finite in fp16
MIN_FP16_EPS = 1e-7                        # smaller norm epsilons underflow in fp16

# ── op support (MIL op types) ─────────────────────────────────────────────────────────────
GATHER_OPS = ("gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis")
CONTROL_FLOW_OPS = ("cond", "while_loop")
UNSUPPORTED_OPS = ("lstm", "gru", "rnn", "topk", "argsort", "non_zero", "cumsum", "band_part")
POOL_OPS = ("avg_pool", "max_pool", "l2_pool")
UPSAMPLE_OPS = ("upsample_nearest_neighbor", "upsample_bilinear")
BLOCKWISE_QUANTISED_OPS = ("constexpr_blockwise_shift_scale",)
MAX_CONV_KERNEL_WIDTH = 13                 # wider kernels, or dilation > 1: slow or no compile
MAX_POOL_KERNEL = 13
MAX_POOL_STRIDE = 2
MAX_UPSAMPLE_SCALE = 2
MAX_WEIGHTS_BYTES = 1_000_000_000         # per model file on iOS (~3 GB on M1)

# ── chip profiles ─────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ChipProfile:
    name: str
    ane_tops: float     # the Neural Engine's marketed rate, fp16-equivalent (TOPS; see CHIPS)
    dram_gbps: float    # DRAM bandwidth (public spec)
    cache_mib: float = ON_CHIP_CACHE_MIB  # on-chip buffer for activations (M1 figure, assumed for all)


# Marketed Neural Engine rates: A14/M1/M1 Pro 11 TOPS, A15/M2 15.8, A16 17, M3 18; A17 Pro 35 and
# M4 38 are counted in int8 (Apple's count changed with the A17 Pro), half that in fp16. DRAM:
# LPDDR4X-4266 × 64 bit (A14, A15), LPDDR5-6400 × 64 (A16, A17 Pro), LPDDR4X-4266 × 128 (M1),
# × 256 LPDDR5 (M1 Pro), LPDDR5 × 128 (M2), × 192 (M3 Pro), LPDDR5X-7500 × 128 (M4).
CHIPS: dict[str, ChipProfile] = {p.name: p for p in (
    ChipProfile("A14", 11.0, 34.1),
    ChipProfile("A15", 15.8, 34.1),
    ChipProfile("A16", 17.0, 51.2),
    ChipProfile("A17 Pro", 17.5, 51.2),
    ChipProfile("M1", 11.0, 68.3),
    ChipProfile("M1 Pro", 11.0, 204.8),
    ChipProfile("M2", 15.8, 100.0),
    ChipProfile("M3 Pro", 18.0, 153.6),
    ChipProfile("M4", 19.0, 120.0),
)}
# The profiles analyze prints by default: one per generation a user is likely to target.
DEFAULT_CHIPS = ("A14", "A15", "A16", "A17 Pro", "M1", "M4")
CALIBRATION_CHIP = "A15"  # iPhone 13 Pro Max, where Apple measured DistilBERT

SOURCES = {
    "ELEMENT_BYTES": "#placement-rules (fp32 tensors); the sizes are those of the MIL dtypes",
    "COMPUTE_BYTES": "#placement-rules (fp32 tensors run off the ANE)",
    "INTEGER_DTYPES": "#placement-rules (integer or boolean tensors)",
    "LAST_AXIS_ALIGN_BYTES": "#principles, 1 (data format)",
    "ALIGNED_LAST_AXIS": "#principles, 1; vision article: last dimension a multiple of 32 (fp16)",
    "NATIVE_RANK": "#principles, 1 (the ANE is 4-D)",
    "MAX_RANK": "#placement-rules (rank > 5: error; rank 5 is slower)",
    "MAX_DIM": "#placement-rules (any dim > 16384)",
    "ON_CHIP_CACHE_MIB": "#hardware-priors (M1 on-chip cache ≈ 4 MiB)",
    "MASKED_LOGIT": "#placement-rules (additive masks: -inf is wrong in fp16, use −1e4)",
    "MIN_FP16_EPS": "#placement-rules (fp16 values: eps < 1e-7)",
    "GATHER_OPS": "#placement-rules (gather, gather_nd, scatter*)",
    "CONTROL_FLOW_OPS": "#placement-rules (cond, while_loop)",
    "UNSUPPORTED_OPS": "#placement-rules (lstm, gru, rnn; topk, argsort, non_zero, cumsum; band_part)",
    "POOL_OPS": "#placement-rules (pooling)",
    "UPSAMPLE_OPS": "#placement-rules (upsample)",
    "BLOCKWISE_QUANTISED_OPS": "#placement-rules (per-block quantised weights)",
    "MAX_CONV_KERNEL_WIDTH": "#placement-rules (conv: dilation > 1; kernel width > 13)",
    "MAX_POOL_KERNEL": "#placement-rules (pooling: kernel > 13)",
    "MAX_POOL_STRIDE": "#placement-rules (pooling: stride > 2)",
    "MAX_UPSAMPLE_SCALE": "#placement-rules (upsample: scale > 2)",
    "MAX_WEIGHTS_BYTES": "#placement-rules (whole model: weights > ~1 GB per file on iOS)",
    "CHIPS": "#hardware-priors (marketed TOPS, fp16-equivalent) and public DRAM specs",
    "DEFAULT_CHIPS": "#hardware-priors (one profile per generation)",
    "CALIBRATION_CHIP": "#anchor-figures (DistilBERT on iPhone 13 Pro Max)",
}


def source(fact: str) -> str:
    """Where a fact comes from: ``docs/ane.md#section …``."""
    return DOC + SOURCES[fact]


def shape_bytes(shape: tuple[int, ...], itemsize: int = COMPUTE_BYTES, padded: bool = False) -> int:
    """Bytes of a tensor; ``padded``: the last axis rounded up to LAST_AXIS_ALIGN_BYTES, as ANE
    buffers are."""
    if not shape:
        return itemsize
    last = shape[-1] * itemsize
    if padded:
        last = -(-last // LAST_AXIS_ALIGN_BYTES) * LAST_AXIS_ALIGN_BYTES
    return math.prod(shape[:-1]) * last


def touches_last_axis(src: tuple, dst: tuple, perm: tuple | list | None = None) -> bool:
    """Whether a transpose (``perm``) or a reshape from ``src`` to ``dst`` moves or resizes the
    last axis: a memory copy on the ANE, whose buffers pad that axis."""
    if perm is not None:
        return bool(perm) and perm[-1] % len(src) != len(src) - 1
    return bool(src) and bool(dst) and src[-1] != dst[-1]
