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
bias and shift mask), are ``_eager_attention``'s rules, run in the same fixpoint. Eager
attention with other steps between its product and its softmax (tanh softcapping, ALiBi and
other position biases, per-head scales, BLOOM's (B·H, Q, K) form) is ``_logit_steps``': the
same per-head lowering (``_per_head``) with those steps replayed on each head's logits. A
logit term computed from the queries or keys (disentangled attention) is declined by name.
Cross-attention needs nothing of its own: k and v are head splits of another stream's
projection, of another length.

Why: one (B, H, S, S) product for every head spills out of the on-chip cache and its softmax
over the last axis cannot be split; per head, with the keys on the channel axis, each piece
is small and the einsums map onto the hardware directly (docs/ane.md#principles, 2 and 3).
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, shape, val
from ane_rewrite.rewrite.rules import COST, MatchResult, Pass, Rule

from ._eager_attention import eager_to_sdpa_rule, regrouped_mask_add
from ._head_bias import head_bias_to_channels
from ._logit_steps import eager_logit_steps_rule
from ._attention_cost import Pays, attention_pays, pays_for
from ._heads import head_channels
from ._masks import additive_mask
from ._per_head import batch_first, lower_per_head
from .options import PassOptions
from .cleanup import CANONICAL_RULES



def _match_sdpa(node: Node, pays: Pays = attention_pays) -> MatchResult:
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
    if reason := pays(heads["q"], heads["k"], heads["v"], mask is not None or bool(is_causal)):
        return MatchResult.fail(reason, COST)
    return MatchResult.ok(heads=heads, mask=mask, is_causal=bool(is_causal),
                          scale=scale if scale is not None else 1.0 / math.sqrt(heads["q"].dim))


def _rewrite_sdpa(rw, node: Node, m: dict) -> Node:
    heads = m["heads"]
    q_BC1Q = batch_first(rw, heads["q"])
    sq, sk = shape(q_BC1Q)[3], shape(batch_first(rw, heads["k"]))[3]
    plan = additive_mask(rw, m["mask"], m["is_causal"], sq, sk, val(q_BC1Q).dtype)
    return lower_per_head(rw, heads, m["scale"], plan)


def _match_left_softmax(node: Node) -> MatchResult:
    """Every softmax of the model that no rule lowered is named, with what was expected, so that
    no attention goes unseen (rank-3 per-group products, qᵀ·k spellings, blocked local windows)."""
    if node.meta.get("ane_rule"):
        return MatchResult.skip()
    return MatchResult.fail(
        f"softmax {node.name} over {tuple(shape(node) or ())} is left as it is: its attention, if it is one, "
        "is not matmul(softmax(f(matmul(q, kᵀ))), v) or sdpa with q, k, v head splits of (B, C, 1, S) projections, "
        "or a rule above declined it")


def _never(rw, node, m):  # pragma: no cover - the rule only reports
    raise AssertionError("left_softmax never rewrites")


left_softmax = Rule("left_softmax", (aten.softmax, aten._softmax), _match_left_softmax, _never,
                    "a softmax no rule lowered: reported, left as it is")

def sdpa_per_head_rule(pays: Pays) -> Rule:
    """The rule, declining (kind ``COST``) an attention whose per-head form ``pays`` says would not pay."""
    return Rule("sdpa_per_head", (aten.scaled_dot_product_attention,), partial(_match_sdpa, pays=pays), _rewrite_sdpa,
                "sdpa(heads(q), heads(k), heads(v)) → per-head einsums on (B, C, 1, S)")


def make_attention_pass(options: PassOptions = PassOptions()) -> Pass:
    """The pass, lowering an attention per head where it pays (every one with
    ``options.lower_every_attention``)."""
    pays = pays_for(options)
    rules = [head_bias_to_channels, regrouped_mask_add, eager_to_sdpa_rule(pays), eager_logit_steps_rule(pays),
             sdpa_per_head_rule(pays), left_softmax, *CANONICAL_RULES]
    return Pass("attention", rules, __doc__)


attention = make_attention_pass()
