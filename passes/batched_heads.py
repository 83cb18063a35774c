"""Batched heads: an attention the attention pass left batched (its per-head form would not pay,
``_attention_cost``) reads its heads straight off the channels-first projections.

Glossary: B batch, C channels (H heads × d), Q queries, K keys, x_BHdS = the heads of a
channels-first x_BC1S as they lie: reshape(x_BC1S[:, b₀ : b₀ + H·t], [B, H, t, S])[:, :, :d]
for heads at steps of t ≥ d channels (t = d where they tile; a fused projection may interleave
the heads' q, k and v, as LeViT's does).

    matmul([c ·] heads(q_BC1Q), heads(k_BC1K)ᵀ) → [c ·] matmul(transpose(q_BHdQ), k_BHdK)  (B, H, Q, K)
        (q and k L2-normalised over their d channels — cosine attention — are normalised over axis 2)
    matmul(w_BHQK, heads(v_BC1K))         → transpose(matmul(v_BHdK, transpose(w_BHQK)))  (B, H, Q, d)
    sdpa(heads(q), heads(k), heads(v), mask, scale)
        → the two products above, with the scale on the logits, an additive (floating) mask
          added and the softmax over the keys between them

``transpose`` swaps the last two axes of a matmul operand: the export folds it into the
matmul (MIL's ``transpose_x``/``transpose_y``), so none of these is a copy. The value product
ends as the (B, H, Q, d) value the attention returned, a view of its (B, C, 1, Q) form, and the
head merge after it cancels against the next projection's conversion. Every step between the
two products (a position bias, a softcap, the model's own softmax) stays as the model wrote
it, on the (B, H, Q, K) logits.

Heads not at equal steps of the channel axis (grouped-query keys read by several query heads)
or that run sequence-first, a boolean or causal mask, and dropout are declined with the reason:
that attention keeps its batched form on the tokens.

Why: the batched form on the tokens' (B, H, S, d) layout moves q, k, v and the output between
the channel axis and the tokens — copies of the last axis (MobileViT's last stage: 4
transposes a layer after layout, 2 as captured; with the heads read as they lie: none).
"""
from __future__ import annotations

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, is_op, rank, shape, val
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._heads import Heads, head_channels, head_step, unread_as_they_lie
from ._logit_steps import cosine_operands
from ._per_head import batch_first, l2_normalize
from .cleanup import CANONICAL_RULES


def _transposed(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(-1, -2)


def _heads_as_they_lie(rw, h: Heads) -> Node:
    """x_BHdS: the heads' channels of their (B, C, 1, S) source, split into (H, step) and cut
    to each head's d channels (a slice of axis 2: no copy of the last axis)."""
    y = batch_first(rw, h)
    b, c, _, s = shape(y)
    stride, heads = head_step(h), len(h.bases)
    offset = h.bases[0] % stride
    first = h.bases[0] - offset
    if (first, stride * heads) != (0, c):
        y = rw.call(aten.slice.Tensor, y, 1, first, first + stride * heads)
    y = rw.call(aten.reshape.default, y, [b, heads, stride, s])
    if (offset, h.dim) != (0, stride):
        y = rw.call(aten.slice.Tensor, y, 2, offset, offset + h.dim)
    return y


def _swap_last(rw, x: Node) -> Node:
    return rw.call(aten.permute.default, x, [0, 1, 3, 2])


def _l2(rw, x_BHdS: Node, eps: float | None) -> Node:
    """F.normalize of each head's d channels (axis 2), as cosine attention has it."""
    return x_BHdS if eps is None else l2_normalize(rw, x_BHdS, 2, eps)


def _logits(rw, hq: Heads, hk: Heads, q_eps: float | None = None, k_eps: float | None = None) -> Node:
    q_BHdQ, k_BHdK = _l2(rw, _heads_as_they_lie(rw, hq), q_eps), _l2(rw, _heads_as_they_lie(rw, hk), k_eps)
    return rw.call(aten.matmul.default, _swap_last(rw, q_BHdQ), k_BHdK)


def _values(rw, weights: Node, hv: Heads) -> Node:
    v_BHdK = _heads_as_they_lie(rw, hv)
    out_BHdQ = rw.call(aten.matmul.default, v_BHdK, _swap_last(rw, weights))
    return _swap_last(rw, out_BHdQ)


OWN = ("batched_sdpa", "batched_logits", "batched_values")


def _own(node: Node) -> bool:
    """A product this pass emitted: its operands are head splits too, read as they lie."""
    return node.meta.get("ane_rule") in OWN


def _batches_match(*hs: Heads) -> bool:
    return len({shape(h.source)[0] for h in hs}) == 1


# ── q · kᵀ ────────────────────────────────────────────────────────────────────────────────

def _scaled(x: Node) -> tuple[Node, float]:
    """x = c · x' (or x' / c) with c a number → (x', c); else (x, 1): the scale timm's
    attention puts on q before its product moves onto the logits."""
    if is_op(x, aten.mul, aten.div) and isinstance(x.args[1], (int, float)) and isinstance(x.args[0], Node):
        return x.args[0], x.args[1] if is_op(x, aten.mul) else 1.0 / x.args[1]
    return x, 1.0


def _match_logits(node: Node) -> MatchResult:
    if _own(node) or rank(node.args[0]) != 4 or rank(node.args[1]) != 4:
        return MatchResult.skip()
    (x, cx), (y, cy) = _scaled(node.args[0]), _scaled(node.args[1])
    x, y, q_eps, k_eps = cosine_operands(x, y)  # L2-normalised heads (Swin v2): normalised as they lie
    hq = head_channels(x)
    hk = head_channels(y) if k_eps is not None else head_channels(y, tail=_transposed)
    if hq is None or hk is None:
        return MatchResult.skip()
    if (reason := unread_as_they_lie(hq) or unread_as_they_lie(hk)) or not _batches_match(hq, hk) or len(hq.bases) != len(hk.bases):
        return MatchResult.fail(reason or "q and k have different batches or head counts")
    return MatchResult.ok(hq=hq, hk=hk, scale=cx * cy, q_eps=q_eps, k_eps=k_eps)


def _rewrite_logits(rw, node: Node, m: dict) -> Node:
    logits = _logits(rw, m["hq"], m["hk"], m["q_eps"], m["k_eps"])
    return logits if m["scale"] == 1.0 else rw.call(aten.mul.Tensor, logits, m["scale"])


batched_logits = Rule("batched_logits", (aten.matmul,), _match_logits, _rewrite_logits,
                      "matmul([c ·] heads(q), heads(k)ᵀ) → [c ·] matmul(transpose(q_BHdQ), k_BHdK)")


# ── weights · v ───────────────────────────────────────────────────────────────────────────

def _match_values(node: Node) -> MatchResult:
    w, v = node.args[:2]
    if _own(node) or rank(w) != 4 or rank(v) != 4 or head_channels(w) is not None:
        return MatchResult.skip()
    hv = head_channels(v)
    if hv is None:
        return MatchResult.skip()
    if reason := unread_as_they_lie(hv):
        return MatchResult.fail(reason)
    if shape(w)[0] != shape(hv.source)[0] or shape(w)[1] != len(hv.bases):
        return MatchResult.fail(f"weights {shape(w)} do not match the {len(hv.bases)} value heads")
    return MatchResult.ok(hv=hv)


batched_values = Rule("batched_values", (aten.matmul,), _match_values,
                      lambda rw, node, m: _values(rw, node.args[0], m["hv"]),
                      "matmul(w, heads(v)) → transpose(matmul(v_BHdK, transpose(w)))")


# ── sdpa ──────────────────────────────────────────────────────────────────────────────────

def _match_sdpa(node: Node) -> MatchResult:
    q, k, v = node.args[:3]
    heads = [head_channels(x) for x in (q, k, v)]
    if any(h is None for h in heads):
        return MatchResult.skip()
    if reason := next(filter(None, map(unread_as_they_lie, heads)), None):
        return MatchResult.fail(reason)
    if len({len(h.bases) for h in heads}) != 1 or not _batches_match(*heads):
        return MatchResult.fail("q, k and v have different batches or head counts (grouped-query heads)")
    mask = arg(node, 3, "attn_mask")
    if arg(node, 4, "dropout_p", 0.0):
        return MatchResult.fail("dropout_p is not 0: attention dropout is a training-time op")
    if arg(node, 5, "is_causal", False):
        return MatchResult.fail("is_causal: the batched form keeps sdpa's own causal mask")
    if mask is not None and not val(mask).dtype.is_floating_point:
        return MatchResult.fail(f"a {val(mask).dtype} mask: only an additive (floating) mask is added to the logits")
    scale = node.kwargs.get("scale", node.args[6] if len(node.args) > 6 else None)
    return MatchResult.ok(heads=heads, mask=mask, scale=heads[0].dim ** -0.5 if scale is None else scale)


def _rewrite_sdpa(rw, node: Node, m: dict) -> Node:
    hq, hk, hv = m["heads"]
    logits = rw.call(aten.mul.Tensor, _logits(rw, hq, hk), m["scale"])
    if m["mask"] is not None:
        logits = rw.call(aten.add.Tensor, logits, m["mask"])
    return _values(rw, rw.call(aten._softmax.default, logits, -1, False), hv)


batched_sdpa = Rule("batched_sdpa", (aten.scaled_dot_product_attention,), _match_sdpa, _rewrite_sdpa,
                    "sdpa(heads(q), heads(k), heads(v)) → matmul(transpose(q_BHdQ), k_BHdK), softmax, "
                    "transpose(matmul(v_BHdK, transpose(w)))")


batched_heads = Pass("batched_heads", [batched_sdpa, batched_logits, batched_values, *CANONICAL_RULES], __doc__)
