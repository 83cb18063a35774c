"""Batched heads: an attention the attention pass left batched (its per-head form would not pay,
``_attention_cost``) reads its heads straight off the channels-first projections.

Glossary: B batch, C channels (H heads × d), Q queries, K keys, x_BHdS = the heads of a
channels-first x_BC1S as they lie: reshape(x_BC1S[:, b₀ : b₀ + H·t], [B, H, t, S])[:, :, :d]
for heads at steps of t ≥ d channels (t = d where they tile; a fused projection may interleave
the heads' q, k and v, as LeViT's does).

    matmul([c ·] heads(q_BC1Q), heads(k_BC1K)ᵀ) → [c ·] matmul(transpose(q_BHdQ), k_BHdK)  (B, H, Q, K)
        (q and k L2-normalised over their d channels — cosine attention — are normalised over axis 2)
    matmul(w_BHQK, heads(v_BC1K))         → transpose(matmul(v_BHdK, transpose(w_BHQK)))  (B, H, Q, d)
    sdpa(heads(q), heads(k), heads(v), mask, scale, is_causal)
        → the two products above, with the scale on the logits, the mask added and the softmax
          over the keys between them: a float mask as it is; a boolean one cast once to 0 / −1e4
          (float ops after the cast, which run on the ANE), the output times 1.0 where a query
          keeps a key (torch's sdpa gives zeros to a query with none); ``is_causal`` a constant
          (Q, K) mask
    a query shared by every batch entry (GCViT's global query, expanded over the windows) → read
    once, (1, H, d, Q), and broadcast by the logits' matmul: nothing repeated, no rank-5 expand
    grouped-query heads (G key/value heads, each read by ``rep`` consecutive query heads: repeated
    by an expand, as Hugging Face's ``repeat_kv``, or by ``repeat_interleave``, or sdpa's
    ``enable_gqa``) → the same products on (B·G, rep, …) queries against (B·G, 1, …) keys and
    values: the matmuls broadcast each key head over its group, nothing is repeated, rank 4

``transpose`` swaps the last two axes of a matmul operand: the export folds it into the
matmul (MIL's ``transpose_x``/``transpose_y``), so none of these is a copy. The value product
ends as the (B, H, Q, d) value the attention returned, a view of its (B, C, 1, Q) form, and the
head merge after it cancels against the next projection's conversion. Every step between the
two products (a position bias, a softcap, the model's own softmax) stays as the model wrote
it, on the (B, H, Q, K) logits.

Heads not at equal steps of the channel axis, key heads that are not consecutive groups of the
query heads, heads that run sequence-first, and dropout are declined with the reason: that
attention keeps its batched form on the tokens.

Why: the batched form on the tokens' (B, H, S, d) layout moves q, k, v and the output between
the channel axis and the tokens — copies of the last axis (MobileViT's last stage: 4
transposes a layer after layout, 2 as captured; with the heads read as they lie: none).
"""
from __future__ import annotations

import torch
from torch.fx import Node

from ane_rewrite.hardware import MASKED_LOGIT
from ane_rewrite.rewrite.graph import arg, aten, is_op, rank, shape, val
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._channel_heads import PRODUCTS, _transposed, channel_heads, channel_values, mark_read
from ._heads import Heads, head_channels, heads_as_they_lie, unread_as_they_lie
from ._logit_steps import cosine_operands
from ._per_head import l2_normalize
from .cleanup import CANONICAL_RULES


def _swap_last(rw, x: Node) -> Node:
    return rw.call(aten.permute.default, x, [0, 1, 3, 2])


def _l2(rw, x_BHdS: Node, eps: float | None) -> Node:
    """F.normalize of each head's d channels (axis 2), as cosine attention has it."""
    return x_BHdS if eps is None else l2_normalize(rw, x_BHdS, 2, eps)


def _logits(rw, hq: Heads, hk: Heads, q_eps: float | None = None, k_eps: float | None = None,
            rep: int = 1) -> Node:
    """(B, H, Q, K) logits; (B·G, rep, Q, K) for grouped-query heads (G key heads, each read by
    ``rep`` query heads), the matmul broadcasting each key head over its group."""
    groups = len(hk.bases)
    q_BHdQ, k_BHdK = _l2(rw, heads_as_they_lie(rw, hq), q_eps), _l2(rw, heads_as_they_lie(rw, hk), k_eps)
    return rw.call(aten.matmul.default, _swap_last(rw, _grouped(rw, q_BHdQ, groups, rep)),
                   _grouped(rw, k_BHdK, groups, rep))


def _values(rw, weights: Node, hv: Heads, rep: int = 1, keep_BH1Q: Node | None = None) -> Node:
    """(B, H, Q, d) from (B, H, Q, K) weights — (B·G, rep, Q, K) for grouped-query heads —, times
    ``keep_BH1Q`` (1.0 where a query keeps a key) before the last axes swap back, so the swap stays
    next to the matmul it folds into."""
    groups = len(hv.bases)
    v_BHdK = _grouped(rw, heads_as_they_lie(rw, hv), groups, rep)
    out = rw.call(aten.matmul.default, v_BHdK, _swap_last(rw, weights))
    mark_read(rw, out)
    if rep != 1:
        b = shape(out)[0] // groups
        out = rw.call(aten.reshape.default, out, [b, groups * rep, *shape(out)[2:]])
    if keep_BH1Q is not None:
        out = rw.call(aten.mul.Tensor, out, keep_BH1Q)
    return _swap_last(rw, out)


OWN = PRODUCTS


def _own(node: Node) -> bool:
    """A product this pass emitted: its operands are head splits too, read as they lie."""
    return node.meta.get("ane_rule") in OWN


def _batches_match(*hs: Heads) -> bool:
    """One batch, which heads shared by every batch entry (``Heads.broadcast``) match."""
    return len({shape(h.source)[0] for h in hs if not h.broadcast}) <= 1


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
    hq = head_channels(x, broadcast=True)  # a query shared by every batch entry: the matmul broadcasts it
    hk = head_channels(y) if k_eps is not None else head_channels(y, tail=_transposed)
    if hq is None or hk is None:
        return MatchResult.skip()
    grouped = _groups(len(hq.bases), hk) if _batches_match(hq, hk) else None
    if grouped is None or (hq.broadcast and grouped[1] != 1):
        return MatchResult.fail(f"q and k have different batches, or k's heads {hk.bases[:4]}… are not groups of "
                                f"the {len(hq.bases)} query heads (a shared query: one key head each)")
    hk, rep = grouped
    if reason := unread_as_they_lie(hq) or unread_as_they_lie(hk):
        return MatchResult.fail(reason)
    return MatchResult.ok(hq=hq, hk=hk, rep=rep, scale=cx * cy, q_eps=q_eps, k_eps=k_eps)


def _rewrite_logits(rw, node: Node, m: dict) -> Node:
    logits = _logits(rw, m["hq"], m["hk"], m["q_eps"], m["k_eps"], m["rep"])
    if m["rep"] != 1:
        logits = rw.call(aten.reshape.default, logits, list(shape(node)))
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
    if shape(w)[0] != shape(hv.source)[0] or shape(w)[1] != len(hv.bases):
        return MatchResult.fail(f"weights {shape(w)} do not match the {len(hv.bases)} value heads")
    grouped = _groups(len(hv.bases), hv)
    if grouped is None:
        return MatchResult.fail(f"the value heads {hv.bases[:4]}… are not groups of the {len(hv.bases)} heads")
    hv, rep = grouped
    if reason := unread_as_they_lie(hv):
        return MatchResult.fail(reason)
    return MatchResult.ok(hv=hv, rep=rep)


def _rewrite_values(rw, node: Node, m: dict) -> Node:
    w = node.args[0]
    if m["rep"] != 1:
        b, heads, q_len, k_len = shape(w)
        w = rw.call(aten.reshape.default, w, [b * len(m["hv"].bases), m["rep"], q_len, k_len])
    return _values(rw, w, m["hv"], m["rep"])


batched_values = Rule("batched_values", (aten.matmul,), _match_values, _rewrite_values,
                      "matmul(w, heads(v)) → transpose(matmul(v_BHdK, transpose(w)))")


# ── sdpa ──────────────────────────────────────────────────────────────────────────────────

def _groups(heads: int, hk: Heads) -> tuple[Heads, int] | None:
    """Grouped-query keys: k's heads as (its distinct heads, the query heads reading each), when
    every run of ``rep`` consecutive ones of the ``heads`` query heads reads one key head — repeated (``repeat_kv``'s
    expand) or given once per group (sdpa's ``enable_gqa``); None otherwise."""
    if len(hk.bases) == heads:
        rep = heads // len(set(hk.bases))
        distinct = hk.bases[::rep]
        if hk.bases != tuple(b for b in distinct for _ in range(rep)):
            return None
    elif heads % len(hk.bases) == 0:
        rep, distinct = heads // len(hk.bases), hk.bases
    else:
        return None
    return Heads(hk.source, distinct, hk.dim, hk.swapped, hk.spatial, hk.broadcast), rep


def _match_sdpa(node: Node) -> MatchResult:
    q, k, v = node.args[:3]
    heads = [head_channels(x) for x in (q, k, v)]
    if any(h is None for h in heads):
        return MatchResult.skip()
    if not _batches_match(*heads):
        return MatchResult.fail("q, k and v have different batches")
    grouped = [_groups(len(heads[0].bases), h) for h in heads[1:]]
    if None in grouped or grouped[0][1] != grouped[1][1]:
        return MatchResult.fail(f"k and v heads {heads[1].bases[:4]}…, {heads[2].bases[:4]}… are not groups of the "
                                f"{len(heads[0].bases)} query heads")
    heads, rep = [heads[0], grouped[0][0], grouped[1][0]], grouped[0][1]
    if reason := next(filter(None, map(unread_as_they_lie, heads)), None):
        return MatchResult.fail(reason)
    mask = arg(node, 3, "attn_mask")
    if arg(node, 4, "dropout_p", 0.0):
        return MatchResult.fail("dropout_p is not 0: attention dropout is a training-time op")
    if mask is not None and rank(mask) != 4:
        return MatchResult.fail(f"a rank-{rank(mask)} mask: the batched form adds a (B, H, Q, K) one")
    scale = node.kwargs.get("scale", node.args[6] if len(node.args) > 6 else None)
    return MatchResult.ok(heads=heads, rep=rep, mask=mask, causal=bool(arg(node, 5, "is_causal", False)),
                          scale=heads[0].dim ** -0.5 if scale is None else scale)


def _grouped(rw, x: Node, groups: int, rep: int) -> Node:
    """(B, H, a, b) → (B·G, H/G, a, b): a free reshape (B and H are adjacent); x itself when
    every query head is its own group (``rep`` = 1)."""
    b, h, r, c = shape(x)
    return x if rep == 1 else rw.call(aten.reshape.default, x, [b * groups, h // groups, r, c])


def _mask_BHQK(rw, mask: Node, causal: bool, q_len: int, k_len: int,
               dtype: torch.dtype) -> tuple[Node | None, Node | None]:
    """The additive mask of the logits (finite: ``MASKED_LOGIT``; in the logits' ``dtype``) and, for a
    boolean mask, 1.0 where a query keeps a key (torch's sdpa gives a query with none zeros), else None."""
    parts, keep = [], None
    if mask is not None and val(mask).dtype == torch.bool:  # one cast, then float ops only (no bool op
        kept = rw.call(aten._to_copy.default, mask, dtype=dtype)  # runs on the ANE)
        keep = rw.call(aten.amax.default, kept, [-1], True)
        parts.append(rw.call(aten.mul.Tensor, rw.call(aten.sub.Tensor, kept, 1.0), -MASKED_LOGIT))
    elif mask is not None:
        parts.append(mask)
    if causal:
        causal_QK = torch.ones(q_len, k_len, dtype=dtype).triu(1).mul(MASKED_LOGIT)
        parts.append(rw.constant("causal", causal_QK.view(1, 1, q_len, k_len)))
    add = parts[0] if parts else None
    for part in parts[1:]:
        add = rw.call(aten.add.Tensor, add, part)
    return add, keep


def _rewrite_sdpa(rw, node: Node, m: dict) -> Node:
    """Grouped-query heads run as (B·G, rep, …) batches against (B·G, 1, …) keys and values: the
    matmuls broadcast over the group, so no head is repeated and everything stays rank 4."""
    hq, hk, hv = m["heads"]
    rep, groups = m["rep"], len(hk.bases)
    b, heads, q_len, d = shape(node)
    logits = rw.call(aten.mul.Tensor, _logits(rw, hq, hk, rep=rep), m["scale"])
    add, keep = _mask_BHQK(rw, m["mask"], m["causal"], q_len, shape(hk.source)[-1], val(node).dtype)
    if add is not None:
        mb, mh = shape(add)[:2]
        if (mb, mh) != (1, 1):  # a per-batch or per-head mask, grouped as the logits are
            add = _grouped(rw, rw.call(aten.expand.default, add, [b, heads, q_len, -1]), groups, rep)
        logits = rw.call(aten.add.Tensor, logits, add)
    if keep is not None:  # (B, H, Q, 1) → (B, H, 1, Q): only an axis of size 1 moves
        keep = rw.call(aten.reshape.default, keep, [*shape(keep)[:2], 1, q_len])
    return _values(rw, rw.call(aten._softmax.default, logits, -1, False), hv, rep, keep)


batched_sdpa = Rule("batched_sdpa", (aten.scaled_dot_product_attention,), _match_sdpa, _rewrite_sdpa,
                    "sdpa(heads(q), heads(k), heads(v)) → matmul(transpose(q_BHdQ), k_BHdK), softmax, "
                    "transpose(matmul(v_BHdK, transpose(w)))")


batched_heads = Pass("batched_heads", [batched_sdpa, batched_logits, batched_values, channel_values, channel_heads,
                                      *CANONICAL_RULES], __doc__)
