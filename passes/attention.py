"""Attention: scaled dot-product attention → per-head einsums on (B, C, 1, S).

Glossary: B batch, C channels (H heads × d), H heads, d head size, Q queries, K keys.

    sdpa(heads(q_BC1Q), heads(k_BC1K), heads(v_BC1K), mask, scale)
        → per head h, with qh = (scale · q_BC1Q)[:, h-th d channels]   (B, d, 1, Q)
                            kh = permute(k_BC1K, [0, 3, 2, 1])[..., h-th d]  (B, K, 1, d)
                            vh = v_BC1K[:, h-th d channels]             (B, d, 1, K)
          logits_BK1Q = einsum('bchq,bkhc->bkhq', qh, kh) + mask_BK1Q
          out_h_Bd1Q  = einsum('bkhq,bchk->bchq', softmax(logits_BK1Q, dim=1), vh)
        → cat(out_h, dim=1) as the (B, H, Q, d) value sdpa returned

The eager form ``matmul(softmax([mask +] [c ·] matmul(q, kᵀ)), v)`` (the scale on the logits,
on q or on k; the mask before or after the scale) is first canonicalised to that sdpa call.

``heads(y)`` is any chain of data-movement ops that splits the channel axis into heads (found
by ``_heads.head_channels``; y may also be a (B, C, H, W) feature map read as (B, C, 1, H·W), including grouped-query heads that share a key/value head). K is
transposed once per attention; the per-head pieces come from one ``split`` where the heads tile
the channels. No (B, H, S, S) tensor remains. Masks become finite additive masks (``_masks``).
The eager form's canonicalisation, and masks added in a regrouped view of the logits (Swin's
bias and shift mask), are ``_eager_attention``'s rules, run in the same fixpoint.

Why: one (B, H, S, S) product for every head spills out of the on-chip cache and its softmax
over the last axis cannot be split; per head, with the keys on the channel axis, each piece
is small and the einsums map onto the hardware directly (docs/ane.md#principles, 2 and 3).
"""
from __future__ import annotations

import math
import operator
from dataclasses import replace

from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, shape, val
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._eager_attention import eager_to_sdpa, regrouped_mask_add
from ._heads import head_channels
from ._masks import additive_mask, row_valid
from .cleanup import CANONICAL_RULES



def _match_sdpa(node: Node) -> MatchResult:
    q, k, v = node.args[:3]
    mask = arg(node, 3, "attn_mask")
    dropout = arg(node, 4, "dropout_p", 0.0)
    is_causal = arg(node, 5, "is_causal", False)
    scale = node.kwargs.get("scale", node.args[6] if len(node.args) > 6 else None)
    if dropout:
        return MatchResult.fail(f"dropout_p={dropout}: attention dropout is a training-time op")
    heads = {}
    for name, x in (("q", q), ("k", k), ("v", v)):
        h = head_channels(x)
        if h is None:
            return MatchResult.fail(f"{name} {shape(x)} is not a head split of the channel axis of a "
                                    "(B, C, 1, S) or (B, C, H, W) tensor (are the projections rewritten by layout?)")
        heads[name] = h
    hq, hk, hv = (len(heads[n].bases) for n in "qkv")
    if hk != hv or hq % hk:
        return MatchResult.fail(f"{hq} query heads, {hk} key and {hv} value heads: no grouping")
    if hk != hq:
        if hk != 1 and not arg(node, 7, "enable_gqa", False):  # one k/v head broadcasts (multi-query)
            return MatchResult.fail("fewer key/value heads than query heads without enable_gqa")
        group = hq // hk  # grouped-query attention: query head h reads key/value head h // group
        for n in "kv":
            bases = heads[n].bases
            heads[n] = replace(heads[n], bases=tuple(bases[h // group] for h in range(hq)))
    if heads["q"].dim != heads["k"].dim:
        return MatchResult.fail("q and k have different head sizes")
    return MatchResult.ok(heads=heads, mask=mask, is_causal=bool(is_causal),
                          scale=scale if scale is not None else 1.0 / math.sqrt(heads["q"].dim))


def _pieces(rw, x: Node, bases: tuple[int, ...], d: int, axis: int) -> list[Node]:
    """x's channel blocks [base, base + d) on ``axis``, one per head (a split where they tile)."""
    width = shape(x)[axis]
    unique = sorted(set(bases))
    if width % d == 0 and unique == list(range(0, width, d)):
        parts = rw.call(aten.split_with_sizes.default, x, [d] * (width // d), axis)
        blocks = {base: rw.call(operator.getitem, parts, i) for i, base in enumerate(unique)}
    else:
        blocks = {base: rw.call(aten.slice.Tensor, x, axis, base, base + d) for base in unique}
    return [blocks[b] for b in bases]


def _batch_first(rw, heads) -> Node:
    """The (B, C, 1, S) tensor the heads read: a sequence-first (S, C, 1, B) one is transposed,
    a (B, C, H, W) feature map is flattened to (B, C, 1, H·W)."""
    if heads.swapped:
        return rw.call(aten.permute.default, heads.source, [3, 1, 2, 0])
    if heads.spatial:
        b, c, rows, cols = shape(heads.source)
        return rw.call(aten.reshape.default, heads.source, [b, c, 1, rows * cols])
    return heads.source


def _rewrite_sdpa(rw, node: Node, m: dict) -> Node:
    hq, hk, hv = m["heads"]["q"], m["heads"]["k"], m["heads"]["v"]
    q_BC1Q, k_BC1K, v_BC1K = (_batch_first(rw, h) for h in (hq, hk, hv))
    batch, _, _, sq = shape(q_BC1Q)
    sk = shape(k_BC1K)[3]
    q_BC1Q = rw.call(aten.mul.Tensor, q_BC1Q, m["scale"])
    k_BK1C = rw.call(aten.permute.default, k_BC1K, [0, 3, 2, 1])   # the one transpose of K
    qs = _pieces(rw, q_BC1Q, hq.bases, hq.dim, 1)
    ks = _pieces(rw, k_BK1C, hk.bases, hk.dim, 3)
    vs = _pieces(rw, v_BC1K, hv.bases, hv.dim, 1)
    plan = additive_mask(rw, m["mask"], m["is_causal"], sq, sk, val(q_BC1Q).dtype)
    shared = plan is not None and len(plan.adds) == 1
    outs = []
    for h, (q_h, k_h, v_h) in enumerate(zip(qs, ks, vs)):
        logits_BK1Q = rw.call(aten.einsum.default, "bchq,bkhc->bkhq", [q_h, k_h])
        if plan is not None:
            logits_BK1Q = rw.call(aten.add.Tensor, logits_BK1Q, plan.adds[0 if shared else h])
        weights_BK1Q = rw.call(aten._softmax.default, logits_BK1Q, 1, False)
        out_Bd1Q = rw.call(aten.einsum.default, "bkhq,bchk->bchq", [weights_BK1Q, v_h])
        if plan is not None and plan.zero_rows and not shared:
            out_Bd1Q = rw.call(aten.mul.Tensor, out_Bd1Q, row_valid(rw, plan.adds[h]))
        outs.append(out_Bd1Q)
    out_BC1Q = rw.call(aten.cat.default, outs, 1)
    if plan is not None and plan.zero_rows and shared:
        out_BC1Q = rw.call(aten.mul.Tensor, out_BC1Q, row_valid(rw, plan.adds[0]))
    heads = len(hq.bases)
    out_BHdQ = rw.call(aten.reshape.default, out_BC1Q, [batch, heads, hv.dim, sq])
    return rw.call(aten.permute.default, out_BHdQ, [0, 1, 3, 2])            # (B, H, Q, d)


sdpa_per_head = Rule("sdpa_per_head", (aten.scaled_dot_product_attention,), _match_sdpa, _rewrite_sdpa,
                     "sdpa(heads(q), heads(k), heads(v)) → per-head einsums on (B, C, 1, S)")

attention = Pass("attention", [regrouped_mask_add, eager_to_sdpa, sdpa_per_head, *CANONICAL_RULES], __doc__)
