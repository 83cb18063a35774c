"""Does lowering an attention per head pay? The latency model the analyzer uses
(``ane_rewrite.cost``: a fixed cost per op plus its busy time; all heads' logits at once are
work the ANE cannot split), applied to the two forms of one attention before it is rewritten:

    batched:  q·kᵀ, softmax and the product with v over (B, H, Q, K) at once — unsplit — and
              the 4 head transposes (q, k, v and the output) it needs on the tokens, none where
              ``batched_heads`` reads the heads as they lie in the channels-first projections
              (at equal steps of the channel axis: its transposes fold into the matmuls)
    per head: per head 2 einsums and a softmax on (B, K, 1, Q) tiles (and the mask add),
              plus the splits, k's transpose, the concat and the output view

Per-head lowering is kept only where it is estimated no slower on every chip profile
(``hardware.CHIPS``); a small attention (a few heads over a few dozen tokens) pays more in ops
than the batched form loses, and is left as it is, with the figures in the reason.
``PassOptions(lower_every_attention=True)`` lowers it anyway (``pays_for``: the tests that check
the lowering's structure on toy configs ask for it). A rule declines with ``COST`` as the kind,
so ``optimize`` tells a region left batched because it would not pay from one it cannot lower.
"""
from __future__ import annotations

from typing import Callable

from ane_rewrite.cost import Work, ane_total_us
from ane_rewrite.hardware import CHIPS, COMPUTE_BYTES, shape_bytes

from ._heads import unread_as_they_lie
from .options import PassOptions

COST_REASON = "per-head form estimated slower"
Pays = Callable[..., "str | None"]  # (heads of q, k, v, masked) → None (lower it) or why not


def _product(flops: float, act: int, unsplit: bool = False) -> Work:
    return Work("compute", flops, act, unsplit=unsplit)


def _other(flops: float, act: int, unsplit: bool = False) -> Work:
    return Work("other", flops, act, unsplit=unsplit)


def _forms(b: int, h: int, q: int, k: int, d: int, dv: int, masked: bool,
           head_transposes: int = 4) -> tuple[list[Work], list[Work]]:
    """The work of the batched and the per-head form of one attention."""
    def padded(*shape):
        return shape_bytes(shape, padded=True)

    logits = padded(b, h, q, k)
    batched = [_product(2.0 * b * h * q * k * d, logits + padded(b, h, q, d) + padded(b, h, k, d), unsplit=True),
               _other(float(b * h * q * k), 2 * logits, unsplit=True),
               _product(2.0 * b * h * q * k * dv, logits + padded(b, h, q, dv) + padded(b, h, k, dv), unsplit=True)]
    tokens = b * max(q, k) * h * max(d, dv) * COMPUTE_BYTES
    batched += [_other(0.0, 2 * tokens)] * head_transposes
    tile = padded(b, k, 1, q)
    per_head = [_product(2.0 * b * q * k * d, tile + padded(b, d, 1, q) + padded(b, k, 1, d)),
                _other(float(b * q * k), 2 * tile),
                _product(2.0 * b * q * k * dv, tile + 2 * padded(b, dv, 1, q))] * h
    per_head += [_other(float(b * q * k), 2 * tile)] * (h if masked else 0)
    per_head += [_other(0.0, 0)] * 6  # splits, k's transpose, the concat, the output view
    return batched, per_head


def _times_us(chip, b: int, h: int, q: int, k: int, d: int, dv: int, masked: bool,
              head_transposes: int = 4) -> tuple[float, float]:
    batched, per_head = _forms(b, h, q, k, d, dv, masked, head_transposes)
    return ane_total_us(batched, chip), ane_total_us(per_head, chip)


def per_head_pays(b: int, h: int, q: int, k: int, d: int, dv: int, masked: bool,
                  head_transposes: int = 4) -> str | None:
    """None when the per-head form is estimated no slower than the batched one on every chip;
    else the reason, with the figures of the chip where it loses most. ``head_transposes``: how
    many transposes of the tokens the batched form needs (0 where its heads are read as they lie)."""
    worst = None
    for chip in CHIPS.values():
        batched, per_head = _times_us(chip, b, h, q, k, d, dv, masked, head_transposes)
        if per_head > batched and (worst is None or per_head / batched > worst[1] / worst[2]):
            worst = (chip.name, per_head, batched)
    if worst is None:
        return None
    name, per_head, batched = worst
    return (f"{COST_REASON} than the batched one ({h} heads of {q}×{k}: {per_head:.1f} µs vs "
            f"{batched:.1f} µs on {name}, by the estimator's model): left as it is")


def attention_pays(hq, hk, hv, masked: bool) -> str | None:
    """``per_head_pays`` for the heads of q, k and v (``_heads.Heads``)."""
    def batch_seq(heads):
        first, _, rows, cols = heads.source.meta["val"].shape
        return (cols, first) if heads.swapped else (first, rows * cols)

    (b, q), (_, k) = batch_seq(hq), batch_seq(hk)
    as_they_lie = len({len(h.bases) for h in (hq, hk, hv)}) == 1 and not any(map(unread_as_they_lie, (hq, hk, hv)))
    return per_head_pays(b, len(hq.bases), q, k, hq.dim, hv.dim, masked, 0 if as_they_lie else 4)


def lower_regardless(hq, hk, hv, masked: bool) -> None:
    """Lower every attention: what ``lower_every_attention=True`` asks for."""
    return None


def pays_for(options: PassOptions) -> Pays:
    return lower_regardless if options.lower_every_attention else attention_pays
