"""Eager attention, canonicalised for ``attention``'s per-head lowering.

    matmul(softmax([masks +] [c ·] matmul(q, kᵀ)), v)   (the scale on the logits, on q or on k;
                                                        masks before or after the scale)
        → scaled_dot_product_attention(q, k, v, Σ masks (each scaled as it was), scale=c)
    3-D (B·H, S, d) operands (nn.MultiheadAttention)    → read as (B, H, S, d), reshaped back
    view(view(x, s) + m, shape(x))                       → x + reshape(expand(m), …)
        (a mask added in a regrouped view of the logits: Swin's bias and shift mask)

Why: one canonical form, so that ``sdpa_per_head`` is the only lowering; an eager product of
every head at once is what the ANE runs worst (docs/ane.md#principles, 2).
"""
from __future__ import annotations

import math
from functools import partial

from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, aten, depends_on, is_op, readers, shape, static_value
from ane_rewrite.rewrite.graph import MAX_STATIC_NODES
from ane_rewrite.rewrite.rules import COST, MatchResult, Rule

from ._attention_cost import Pays, attention_pays
from ._heads import head_channels, source_of


def _constant(node: Node):
    """The value of a static node read from constants and buffers only — a learned parameter
    must stay a parameter (load_state_dict) — else None."""
    params = dict(node.graph.owning_module.named_parameters())
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if (n.op == "get_attr" and n.target in params) or len(seen) > MAX_STATIC_NODES:
            return None
        stack.extend(n.all_input_nodes)
    return static_value(node)


def _scalar(node: Node):
    """node = x · c or x / c for a Python number c → (x, factor), else None."""
    if is_op(node, aten.mul.Tensor) and isinstance(node.args[1], (int, float)):
        return node.args[0], float(node.args[1])
    if is_op(node, aten.mul.Tensor) and isinstance(node.args[0], (int, float)):
        return node.args[1], float(node.args[0])
    if is_op(node, aten.div.Tensor) and isinstance(node.args[1], (int, float)) and node.args[1] != 0:
        return node.args[0], 1.0 / float(node.args[1])
    if is_op(node, aten.mul.Tensor, aten.div.Tensor) and len(node.args) == 2 and isinstance(node.args[1], Node) \
            and shape(node.args[1]) == () and isinstance(node.args[0], Node):
        value = _constant(node.args[1])  # a scale computed as a 0-d tensor (DeBERTa's √(3d))
        if value is not None and value.is_floating_point() and float(value) != 0:
            return node.args[0], float(value) if is_op(node, aten.mul.Tensor) else 1.0 / float(value)
    return None


def _peel_logits(x: Node):
    """softmax input = [masks +] [c ·] matmul(q, kᵀ), scales and masks in any order →
    (matmul, scale, masks), each mask with the factor of the scales applied after it (a mask
    added inside a scale is scaled with the logits); None if x is not of that form."""
    scale, masks = 1.0, []
    for _ in range(4):
        if is_op(x, aten.matmul, aten.bmm) and len(readers(x)) == 1:
            return x, scale, masks
        peeled = _scalar(x)
        if peeled is not None:  # outer to the masks found so far: it scales the logits only
            x, factor = peeled
            scale *= factor
            continue
        if is_op(x, aten.add.Tensor) and len(x.args) == 2 and not x.kwargs:
            a, b = x.args
            if not isinstance(a, Node) or not isinstance(b, Node):
                return None
            logits, mask = (a, b) if _leads_to_matmul(a) else (b, a)
            masks.append((mask, scale))  # every scale peeled so far applies to this mask too
            x = logits
            continue
        return None
    return None


def _leads_to_matmul(x: Node) -> bool:
    while True:
        if is_op(x, aten.matmul, aten.bmm):
            return True
        peeled = _scalar(x)
        if peeled is not None:
            x = peeled[0]
        elif is_op(x, aten.add.Tensor) and isinstance(x.args[0], Node):
            x = x.args[0]
        else:
            return False


def product_operands(qk: Node, scale: float) -> tuple[Node, Node, float]:
    """q and kᵀ of the logits product, a scale applied to either before it folded into scale."""
    operands = []
    for operand in qk.args[:2]:
        peeled = _scalar(operand)
        if peeled is not None:
            operand, factor = peeled
            scale *= factor
        operands.append(operand)
    return operands[0], operands[1], scale


def content_term_reason(term: Node, why: str) -> str:
    return (f"logit term {term.name} is computed from the queries or keys but is not a relative-position "
            f"gather of them (disentangled attention) lowered per head: {why}")


def head_splits(q: Node, logits_shape: tuple) -> list:
    """How 3-D (B·H, S, d) operands read as (B, H, S, d): the (B, H) of 4-D logits, else every
    outer axis B of the projection the heads come from; [None] for 4-D operands."""
    if len(shape(q)) != 3:
        return [None]
    if len(logits_shape) == 4:
        return [tuple(logits_shape[:2])]
    bh = shape(q)[0]
    y = shape(source_of(q)) or ()
    return [(b, bh // b) for b in dict.fromkeys(y[:1] + y[3:]) if b and bh % b == 0]


def _transposed(t):
    return t.transpose(-1, -2)


def _heads_of(q: Node, k_t: Node, v: Node, split: tuple[int, int] | None):
    """Head analysis of an eager product's operands: 4-D as they are, or 3-D (B·H, S, d)
    read as (B, H, S, d) with ``split = (B, H)``."""
    if split is None:
        return head_channels(q), head_channels(k_t, tail=_transposed), head_channels(v)
    b, h = split

    def as4(t):
        return t.reshape(b, h, *t.shape[1:])

    return (head_channels(q, tail=as4), head_channels(k_t, tail=lambda t: _transposed(as4(t))),
            head_channels(v, tail=as4))


def _match_eager(node: Node, pays: Pays = attention_pays) -> MatchResult:
    weights, v = node.args[:2]
    if not (is_op(weights, aten.softmax, aten._softmax) and len(readers(weights)) == 1):
        return MatchResult.skip()
    r = len(shape(weights) or ())
    if r not in (3, 4) or weights.args[1] not in (-1, r - 1):
        return MatchResult.skip()
    peeled = _peel_logits(weights.args[0])
    if peeled is None:
        return MatchResult.fail("softmax input is not [mask +] [scale ·] matmul(q, kᵀ)")
    qk, scale, masks = peeled
    q, k_t, scale = product_operands(qk, scale)
    if any(depends_on(mask, {source_of(q), source_of(k_t)}) for mask, _ in masks):
        return MatchResult.skip()  # a term computed from q or k: eager_logit_steps' to lower or decline
    for split in head_splits(q, shape(weights)):
        found = _heads_of(q, k_t, v, split)
        if all(f is not None for f in found):
            if reason := pays(*found, bool(masks)):
                return MatchResult.fail(reason, COST)
            return MatchResult.ok(q=q, k_t=k_t, v=v, scale=scale, split=split, masks=masks)
    names = "q, k and v" if r == 4 else "q, k and v (read as (B, H, S, d))"
    return MatchResult.fail(f"{names} are not head splits of the channel axis of (B, C, 1, S) tensors")


def _rewrite_eager(rw, node: Node, m: dict) -> Node:
    q, k_t, v, split = m["q"], m["k_t"], m["v"], m["split"]
    mask = None
    for term, factor in m["masks"]:  # every additive term (bias, shift mask, padding) in one mask
        if factor != 1.0:
            term = rw.call(aten.mul.Tensor, term, factor)
        mask = term if mask is None else rw.call(aten.add.Tensor, mask, term)
    if split is not None:  # (B·H, S, d) → (B, H, S, d)
        q, k_t, v = (rw.call(aten.reshape.default, t, [*split, *shape(t)[1:]]) for t in (q, k_t, v))
        if mask is not None and len(shape(mask)) == 3 and shape(mask)[0] == split[0] * split[1]:
            mask = rw.call(aten.reshape.default, mask, [*split, *shape(mask)[1:]])
    k = rw.call(aten.permute.default, k_t, [0, 1, 3, 2])
    out = rw.call(aten.scaled_dot_product_attention.default, q, k, v, mask, scale=m["scale"])
    if split is not None:
        out = rw.call(aten.reshape.default, out, list(shape(node)))
    return out


def _groups(outer: tuple, inner: tuple) -> list[list[int]] | None:
    """inner = a regrouping of outer's axes (split or merged, order kept) → for each outer axis
    the inner axes it spans; None when the two shapes are not such a regrouping."""
    groups, j = [], 0
    for size in outer:
        group, prod = [], 1
        while j < len(inner) and prod < size:
            group.append(j)
            prod *= inner[j]
            j += 1
        if prod != size:
            return None
        groups.append(group)
    return groups if j == len(inner) else None


def _match_regrouped_add(node: Node) -> MatchResult:
    """view(view(x, s) + m₁ [+ m₂ …], shape(x)): masks added in a regrouped view (Swin's shift
    mask; Hugging Face's Swin v2 adds it twice)."""
    masks, inner = [], node.args[0]
    while is_op(inner, aten.add.Tensor) and len(readers(inner)) == 1 and not inner.kwargs:
        split, mask = inner.args
        if not isinstance(mask, Node) or shape(mask) is None:
            return MatchResult.skip()
        masks.append(mask)
        inner = split
    if not masks or not is_op(inner, *VIEWS):
        return MatchResult.skip()
    split, x = inner, inner.args[0]
    if shape(node) != shape(x) or any(len(shape(m)) > len(shape(split)) for m in masks):
        return MatchResult.skip()
    groups = _groups(shape(x), shape(split))
    if groups is None:
        return MatchResult.skip()
    return MatchResult.ok(x=x, masks=masks[::-1], split_shape=shape(split), groups=groups)


def _regrouped(rw, mask: Node, full: list[int], groups) -> Node:
    padded = [1] * (len(full) - len(shape(mask))) + list(shape(mask))
    if len(padded) != len(shape(mask)):
        mask = rw.call(aten.reshape.default, mask, padded)
    expanded, target = list(padded), []
    for group in groups:
        kept = [a for a in group if padded[a] != 1]
        if kept:  # the group merges into one axis: broadcast inside it must become real
            for a in group:
                expanded[a] = full[a]
            target.append(math.prod(full[a] for a in group))
        else:
            target.append(1)
    if expanded != padded:
        mask = rw.call(aten.expand.default, mask, expanded)
    return rw.call(aten.reshape.default, mask, target)


def _rewrite_regrouped_add(rw, node: Node, m: dict) -> Node:
    out = m["x"]
    for mask in m["masks"]:
        out = rw.call(aten.add.Tensor, out, _regrouped(rw, mask, list(m["split_shape"]), m["groups"]))
    return out


regrouped_mask_add = Rule(
    "regrouped_mask_add", VIEWS, _match_regrouped_add, _rewrite_regrouped_add,
    "view(view(x, s) + m₁ [+ m₂ …], shape(x)) → x + reshape(expand(m₁), shape(x)-broadcastable) [+ …]")

def eager_to_sdpa_rule(pays: Pays) -> Rule:
    """The rule, declining (kind ``COST``) an attention whose per-head form ``pays`` says would not pay."""
    return Rule("eager_to_sdpa", (aten.matmul, aten.bmm), partial(_match_eager, pays=pays), _rewrite_eager,
                "matmul(softmax([mask +] [c ·] matmul(q, kᵀ)), v) → sdpa(q, k, v, mask, scale=c)")
