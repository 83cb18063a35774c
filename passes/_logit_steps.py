"""Eager attention with steps between its product and its softmax, lowered per head.

    matmul(softmax(f(matmul(q, kᵀ))), v)      f: a chain of elementwise steps, each with at most
                                              one other operand that does not depend on q·kᵀ
        → per head h: f_h(einsum(q_h, k_h)) + masks_h, softmax over the keys, einsum with v_h

The chain from the product to the softmax may hold, in any order:
- scalar steps: ``c · x``, ``x / c``, ``x + c``, ``tanh``, ``neg``, ``sigmoid``, ``clamp`` (tanh
  logit softcapping ``c · tanh(x / c)``, a temperature after the product);
- tensor terms: ``x + t``, ``x − t``, ``x · t``, ``x / t`` with t broadcastable to the logits
  (B, H, Q, K): ALiBi slopes × distances, a learned table already gathered, T5's bucketed
  bias, a bias computed at run time by a sub-graph, a learned per-head scale (H, 1, 1). Each
  term is laid out once per head it differs on — (Bt, K, 1, Q) — and shared when it is the
  same for every head;
- regrouping views between (B·H, Q, K) and (B, H, Q, K) (BLOOM's ``baddbmm`` form), and casts
  that keep the dtype.
q and k may be L2-normalised heads (cosine attention, with a learned per-head logit scale:
Swin v2): each head's piece is normalised over its d channels before the product.
A masked fill ``where(cond, dtype-min, x)`` among the last steps (MPT) is a mask term too
(``MASKED_LOGIT`` where cond holds). Leading scalar scales fold into q (as sdpa's scale);
trailing additive terms are the mask (``_masks``: a padding mask becomes arithmetic on the
model's mask input, others are clamped to the fp16-safe masked value); the steps in between
are replayed on each head's logits.

A term that is itself computed from the queries or keys through a relative-position gather
(DeBERTa's content-to-position and position-to-content terms) is emitted per head without a
gather (``_relative_terms``); any other term computed from them is declined, naming the node
where it stopped.

Why: the same per-head form as plain attention (docs/ane.md#principles, 2 and 3); a step
replayed per head costs one elementwise op on a (B, K, 1, Q) tile.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch.fx import Node

from ane_rewrite.hardware import MASKED_LOGIT
from ane_rewrite.rewrite.graph import (VIEWS, aten, depends_on, is_op, readers, shape,
                                      static_value, val)
from ane_rewrite.rewrite.rules import COST, MatchResult, Rule

from ._attention_cost import Pays, attention_pays
from ._eager_attention import _heads_of, _peel_logits, _scalar, content_term_reason, head_splits, product_operands
from ._heads import head_channels
from ._masks import additive_mask
from ._per_head import lower_per_head
from ._relative_terms import ContentTerms, content_term

MAX_STEPS = 16
UNARY = (aten.tanh, aten.neg, aten.sigmoid, aten.clamp, aten.relu)
BINARY = (aten.add, aten.sub, aten.mul, aten.div)


def _same_dtype_copy(node: Node) -> bool:
    return is_op(node, aten._to_copy, aten.clone, aten.alias) and val(node).dtype == val(node.args[0]).dtype


def _regroups(node: Node) -> bool:
    """A view between (B·H, Q, K) and (B, H, Q, K): same elements, same last two axes."""
    a, b = shape(node.args[0]), shape(node)
    return (is_op(node, *VIEWS) and a is not None and b is not None and a[-2:] == b[-2:]
            and math.prod(a) == math.prod(b) and {len(a), len(b)} <= {3, 4})


def _chain(x: Node, depth: int = 0):
    """[(step, index of the expression argument)] from the q·kᵀ product up to x, with the
    product; None when x is not such a chain."""
    if depth > MAX_STEPS or not isinstance(x, Node) or len(readers(x)) != 1:
        return None
    if is_op(x, aten.matmul, aten.bmm):
        return x, []
    if is_op(x, *UNARY) or _same_dtype_copy(x) or (is_op(x, *VIEWS) and _regroups(x)):
        inner = _chain(x.args[0], depth + 1)
        return None if inner is None else (inner[0], inner[1] + [(x, 0)])
    if is_op(x, aten.where) and len(x.args) == 3 and _masked_fill(x) is not None:
        inner = _chain(x.args[2], depth + 1)
        return None if inner is None else (inner[0], inner[1] + [(x, 2)])
    if is_op(x, *BINARY) and len(x.args) == 2 and not x.kwargs:
        for i in (0, 1):
            if i == 1 and is_op(x, aten.sub, aten.div):
                break  # t − f(x), t / f(x): not steps of this form
            inner = _chain(x.args[i], depth + 1)
            if inner is not None:
                return inner[0], inner[1] + [(x, i)]
    return None


def _fill_value(x: Node) -> float | None:
    fill = x.args[1]
    if isinstance(fill, Node):
        static = static_value(fill)
        return float(static) if static is not None and static.numel() == 1 else None
    return float(fill) if isinstance(fill, (int, float)) else None


def _masked_fill(x: Node):
    """where(cond, fill, logits) with a fill at or below the masked logit (a masked_fill with
    dtype-min: MPT) → cond, else None."""
    cond, value = x.args[0], _fill_value(x)
    if value is None or value > MASKED_LOGIT or not isinstance(cond, Node) or val(cond).dtype != torch.bool:
        return None
    return cond


def _term(step: Node, i: int):
    other = step.args[1 - i] if len(step.args) == 2 and is_op(step, *BINARY) else None
    return other if isinstance(other, Node) else None


def _l2_normalized(x: Node):
    """x = y / clamp(‖y‖₂ over the last axis, min=eps) (F.normalize: cosine attention's q and
    k) → (y, eps), else None."""
    if not (is_op(x, aten.div) and isinstance(x.args[1], Node)):
        return None
    y, n = x.args
    while is_op(n, aten.expand):
        n = n.args[0]
    if not (is_op(n, aten.clamp, aten.clamp_min) and isinstance(n.args[1], (int, float))):
        return None
    eps, n = float(n.args[1]), n.args[0]
    if is_op(n, aten.linalg_vector_norm) and n.args[1:3] in ((2, [-1]), (2.0, [-1]), (2, [len(shape(y)) - 1])):
        return (y, eps) if n.args[0] is y else None
    if not (is_op(n, aten.pow) and n.args[1] == 0.5 and is_op(n.args[0], aten.sum)):
        return None
    total = n.args[0]
    dims = [d % len(shape(y)) for d in total.args[1]]
    square = total.args[0]
    squares_y = (is_op(square, aten.pow) and square.args[1] == 2) or (is_op(square, aten.mul) and square.args[0] is square.args[1])
    if dims != [len(shape(y)) - 1] or not squares_y or square.args[0] is not y:
        return None
    return y, eps


def _transposes_last_two(x: Node) -> bool:
    r = len(shape(x) or ())
    if is_op(x, aten.permute):
        return list(x.args[1]) == [*range(r - 2), r - 1, r - 2]
    return is_op(x, aten.transpose) and sorted(d % r for d in x.args[1:3]) == [r - 2, r - 1]


def cosine_operands(q: Node, k_t: Node):
    """q and kᵀ of cosine attention: L2-normalised heads → the heads, their eps (None when the
    operand is not normalised), and k itself (kᵀ unwrapped) when k is."""
    q_found = _l2_normalized(q)
    k_found = _l2_normalized(k_t.args[0]) if _transposes_last_two(k_t) else None
    q_eps = k_eps = None
    if q_found is not None:
        q, q_eps = q_found
    if k_found is not None:
        k_t, k_eps = k_found
    return q, k_t, q_eps, k_eps


def _split_steps(steps: list):
    """Leading scalar scales (→ q's scale), trailing added terms (→ the mask), the rest."""
    scale, lead = 1.0, 0
    for step, _ in steps:
        peeled = _scalar(step)
        if peeled is not None and is_op(step, aten.mul, aten.div):
            scale *= peeled[1]
        elif not is_op(step, *VIEWS):
            break
        lead += 1
    tail = len(steps)
    while tail > lead and (is_op(steps[tail - 1][0], *VIEWS, aten.where) or (
            is_op(steps[tail - 1][0], aten.add) and _term(*steps[tail - 1]) is not None)):
        tail -= 1
    if any(is_op(step, aten.where) for step, _ in steps[lead:tail]):
        return None  # a masked fill with other steps after it: not a mask of the logits
    return scale, steps[lead:tail], steps[tail:]


def _match(node: Node, pays: Pays = attention_pays) -> MatchResult:
    weights, v = node.args[:2]
    while isinstance(weights, Node) and len(readers(weights)) == 1 and (
            _same_dtype_copy(weights) or (is_op(weights, *VIEWS) and _regroups(weights))):
        weights = weights.args[0]
    if not (is_op(weights, aten.softmax, aten._softmax) and len(readers(weights)) == 1):
        return MatchResult.skip()
    r = len(shape(weights))
    if r not in (3, 4) or weights.args[1] not in (-1, r - 1):
        return MatchResult.skip()
    plain = weights is node.args[0] and _peel_logits(weights.args[0]) is not None
    if val(weights).dtype != val(weights.args[0]).dtype:
        return MatchResult.fail(f"softmax {weights.name} changes the dtype of its logits")
    found = _chain(weights.args[0])
    if found is None:
        return MatchResult.fail(f"the input of {weights.name} is not a chain of elementwise steps "
                                "(each with at most one operand besides the logits) over matmul(q, kᵀ)")
    qk, steps = found
    split_steps = _split_steps(steps)
    if split_steps is None:
        return MatchResult.fail(f"a masked fill before the last steps of {weights.name}'s logits")
    scale, middle, tail = split_steps
    q, k_t, scale = product_operands(qk, scale)
    q, k_t, q_eps, k_eps = cosine_operands(q, k_t)
    if (q_eps is not None or k_eps is not None) and len(shape(q)) != 4:
        return MatchResult.fail("cosine attention on (B·H, S, d) operands is not lowered")
    for split in head_splits(q, shape(weights)):
        found_heads = _heads_of(q, k_t, v, split)
        if k_eps is not None:  # k itself, not kᵀ
            found_heads = (found_heads[0], head_channels(k_t), found_heads[2])
        if all(h is not None for h in found_heads):
            break
    else:
        return MatchResult.fail("q, k and v are not head splits of the channel axis of (B, C, 1, S) tensors")
    hq, hk, hv = found_heads
    if len({len(hq.bases), len(hk.bases), len(hv.bases)}) != 1 or hq.dim != hk.dim:
        return MatchResult.fail("q, k and v do not have the same heads")
    sources, content = {hq.source, hk.source}, set()
    for step, i in middle + tail:
        term = _term(step, i)
        if term is not None and depends_on(term, sources):
            if reason := content_term(term, split, sources, *shape(weights)[-2:]):
                return MatchResult.fail(content_term_reason(term, reason))
            content.add(term)
    if plain and not content:
        return MatchResult.skip()  # the plain form: eager_to_sdpa's
    if reason := pays(hq, hk, hv, bool(tail)):
        return MatchResult.fail(reason, COST)
    return MatchResult.ok(heads={"q": hq, "k": hk, "v": hv}, scale=scale, middle=middle, tail=tail,
                          split=split, logits_rank=r, norms=(q_eps, k_eps), content=content)


def _as_BHQK(rw, term: Node, at_rank: int, split) -> Node:
    """A term broadcastable to the logits where it is applied — (B·H, Q, K) or (B, H, Q, K) —
    as a 4-D (Bt, Ht, Qt, Kt) tensor."""
    t_shape = list(shape(term))
    padded = [1] * (at_rank - len(t_shape)) + t_shape
    if at_rank == 3:
        b, h = split
        lead = [b, h] if padded[0] == b * h else [1, 1]
        padded = lead + padded[1:]
    if padded != t_shape:
        term = rw.call(aten.reshape.default, term, padded)
    return term


def _per_head(rw, term: Node, at_rank: int, split, h: int) -> Node:
    """One head's part of a term, laid out as the per-head logits: (Bt, Kt, 1, Qt)."""
    t = _as_BHQK(rw, term, at_rank, split)
    picked = rw.call(aten.select.int, t, 1, h if shape(t)[1] > 1 else 0)
    return rw.call(aten.unsqueeze.default, rw.call(aten.permute.default, picked, [0, 2, 1]), 2)


def _rewrite(rw, node: Node, m: dict) -> Node:
    split, content = m["split"], m["content"]
    terms = ContentTerms(split)
    added = [_term(step, i) for step, i in m["tail"] if _term(step, i) in content]

    def transform(rw, logits, h):
        for step, i in m["middle"]:
            if is_op(step, *VIEWS):
                continue
            if is_op(step, *BINARY):
                other = step.args[1 - i]
                if other in content:
                    other = terms.per_head(rw, other, h)
                elif isinstance(other, Node):
                    other = _per_head(rw, other, len(shape(step)), split, h)
                args = (logits, other) if i == 0 else (other, logits)
                logits = rw.call(step.target, *args, **step.kwargs)
            else:
                logits = rw.call(step.target, logits, *step.args[1:], **step.kwargs)
        for term in added:  # a trailing term from q or k: added before the masks, which commute with it
            logits = rw.call(aten.add.Tensor, logits, terms.per_head(rw, term, h))
        return logits

    mask = None
    for step, i in m["tail"]:
        term = _term(step, i)
        if term in content:
            continue
        if is_op(step, aten.where):  # masked where cond: an additive 0 / fill-value term (_masks converts it)
            dtype = val(step).dtype  # a where, not 0/1 × fill: dtype-min is −inf in fp16, and 0 · −inf is NaN
            fill = rw.constant("fill", torch.tensor(max(_fill_value(step), torch.finfo(dtype).min), dtype=dtype))
            term = rw.call(aten.where.self, _masked_fill(step), fill, rw.constant("zero", torch.tensor(0.0, dtype=dtype)))
        if term is None:
            continue
        term = _as_BHQK(rw, term, len(shape(step)), split)
        mask = term if mask is None else rw.call(aten.add.Tensor, mask, term)
    q_val = val(m["heads"]["q"].source)
    sq, sk = val(node).shape[-2], shape(node.args[1])[-2]
    fills = any(is_op(step, aten.where) for step, _ in m["tail"])
    plan = additive_mask(rw, mask, False, sq, sk, q_val.dtype, replaces=fills) if mask is not None else None
    out = lower_per_head(rw, m["heads"], m["scale"], plan, transform if m["middle"] or added else None, m["norms"])
    if len(shape(node)) != 4 or list(shape(out)) != list(shape(node)):
        out = rw.call(aten.reshape.default, out, list(shape(node)))
    return out


def eager_logit_steps_rule(pays: Pays) -> Rule:
    """The rule, declining (kind ``COST``) an attention whose per-head form ``pays`` says would not pay."""
    return Rule("eager_logit_steps", (aten.matmul, aten.bmm), partial(_match, pays=pays), _rewrite,
                "matmul(softmax(f(matmul(q, kᵀ))), v) → per head: f_h(einsum(q_h, k_h)) + mask_h, softmax, einsum with v_h")

