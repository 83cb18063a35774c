"""Hypothesis strategies over architecture specs (``architecture.Spec``), and the check each
generated architecture must pass: back from ``optimize`` equivalent (every pass that would have
broken it rolled back), never silently different."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from .architecture import Spec, build

WIDTHS = [12, 20, 24, 36, 40, 48, 60, 64, 72, 96]   # several not divisible by 8
TEXT_SEQS = [1, 5, 8, 16, 33]
LONG_SEQ = 1024


def _even_head_counts(width: int) -> list[int]:
    return [h for h in range(1, width + 1) if width % h == 0 and (width // h) % 2 == 0 and width // h >= 2]


@st.composite
def architectures(draw) -> Spec:
    kind = draw(st.sampled_from(["text", "text", "text", "vision"]))
    long = kind == "text" and draw(st.integers(0, 19)) == 0          # one text model in twenty: seq ≥ 1000
    width = draw(st.sampled_from([w for w in WIDTHS if w <= 32] if long else WIDTHS))
    heads = draw(st.sampled_from(_even_head_counts(width)))
    kv_heads = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
    common = dict(
        depth=1 if long else draw(st.integers(1, 3)), width=width, heads=heads, kv_heads=kv_heads,
        norm=draw(st.sampled_from(["layer", "rms", "none"])), norm_place=draw(st.sampled_from(["pre", "post"])),
        act=draw(st.sampled_from(["gelu", "gelu_tanh", "relu", "silu"])), gated=draw(st.booleans()),
        mlp_ratio=draw(st.sampled_from([1, 2, 4])), spelling=draw(st.sampled_from(["sdpa", "eager"])),
        parallel=draw(st.booleans()), shared=draw(st.booleans()), batch=1 if long else draw(st.sampled_from([1, 2])))
    if kind == "vision":
        side = draw(st.sampled_from([4, 6, 8]))
        window = draw(st.sampled_from([0] + [w for w in (2, 3, 4) if side % w == 0 and w < side]))
        return Spec(kind="vision", seq=side, window=window, positions=draw(st.sampled_from(["none", "relative"])),
                    stem=draw(st.sampled_from(["patch", "conv_patch"])), **common)
    positions = draw(st.sampled_from(["learned", "rope_half", "rope_pairs", "alibi", "relative", "none"]))
    if long and positions == "relative":
        positions = "alibi"
    return Spec(kind="text", seq=LONG_SEQ if long else draw(st.sampled_from(TEXT_SEQS)), positions=positions,
                mask=draw(st.sampled_from(["padding", "causal", "causal_padding", "sliding", "none"])), **common)


@dataclass
class Outcome:
    spec: Spec
    equivalent: bool = False
    psnr: float = float("nan")
    rolled_back: list[str] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def check(spec: Spec, seed: int = 0, draws: int = 5) -> Outcome:
    """Build (random weights from ``seed``), optimize in safe mode with every attention lowered
    per head (at these widths the estimator would leave most batched: the deepest rewrite is
    the one to check), verify over ``draws`` draws — three more than the guard saw."""
    import ane_rewrite

    out, start = Outcome(spec), time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, example = build(spec)
    try:
        fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
        report = ane_rewrite.verify(model, fast, example, draws=draws)
        out.equivalent, out.psnr = report.ok, report.psnr
        out.rolled_back = [r.summary() for r in fast.ane_report.rolled_back]
        out.declined = [f"{d.rule}: {d.reason}" for r in fast.ane_report.results for d in r.declined]
    except Exception as exc:  # reported: a generated model must come back, or be refused by name
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - start
    return out
