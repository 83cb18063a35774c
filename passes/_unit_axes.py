"""Rank-5 movement chains whose extra axes are of size 1: the same values at rank ≤ 4.

At batch 1, or at one token (a decode step), a chain that splits a fused projection or
interleaves a rotary table has axes of size 1 that move no data; left in, they make rank-5
tensors (slower on the ANE; rank 6 fails to convert). Leaving them out keeps the element order,
so the chain is the same function:

    select(reshape(x, S), d, i), rank(S) > 4       → reshape(select(reshape(x, S without its 1s), d′, i), shape)
        (Falcon's fused k/v split at one token: (1, 1, kv, g + 2, d) → select of the k or v slot)
    expand(unsqueeze(x, a), E), rank(E) > 4        → expand(reshape(x, U without E's 1s), E without its 1s)
        (GPT-J's interleaved rotary table, repeat_interleave as unsqueeze + expand)

Each fires only when leaving the size-1 axes out brings the chain to rank ≤ 4.
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.hardware import NATIVE_RANK
from ane_rewrite.rewrite.graph import aten, is_op, normalize_dim, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule


def _match_select(node: Node) -> MatchResult:
    view = node.args[0]
    if not is_op(view, aten.reshape) or len(shape(view)) <= NATIVE_RANK:
        return MatchResult.skip()
    sizes = list(shape(view))
    dim = normalize_dim(node.args[1], len(sizes))
    kept = [a for a in range(len(sizes)) if sizes[a] != 1 or a == dim]
    if len(kept) > NATIVE_RANK:
        return MatchResult.fail(f"{view.name} {tuple(sizes)} has rank {len(kept)} without its axes of size 1")
    return MatchResult.ok(x=view.args[0], sizes=[sizes[a] for a in kept], dim=kept.index(dim), index=node.args[2])


def _rewrite_select(rw, node: Node, m: dict) -> Node:
    x = rw.call(aten.reshape.default, m["x"], m["sizes"])
    picked = rw.call(aten.select.int, x, m["dim"], m["index"])
    return rw.call(aten.reshape.default, picked, list(shape(node)))


def _match_expand(node: Node) -> MatchResult:
    unsqueezed = node.args[0]
    if not is_op(unsqueezed, aten.unsqueeze) or len(shape(node)) <= NATIVE_RANK:
        return MatchResult.skip()
    target, before = list(shape(node)), list(shape(unsqueezed))
    kept = [a for a in range(len(target)) if target[a] != 1]
    if len(kept) > NATIVE_RANK or not kept:
        return MatchResult.fail(f"{node.name} {tuple(target)} has rank {len(kept)} without its axes of size 1")
    return MatchResult.ok(x=unsqueezed.args[0], before=[before[a] for a in kept], after=[target[a] for a in kept])


def _rewrite_expand(rw, node: Node, m: dict) -> Node:
    x = rw.call(aten.reshape.default, m["x"], m["before"])
    wide = rw.call(aten.expand.default, x, m["after"])
    return rw.call(aten.reshape.default, wide, list(shape(node)))


unit_axes_select = Rule("unit_axes_select", (aten.select,), _match_select, _rewrite_select,
                        "select(reshape(x, S), d, i), rank 5 → select at rank ≤ 4, its 1s left out")
unit_axes_expand = Rule("unit_axes_expand", (aten.expand,), _match_expand, _rewrite_expand,
                        "expand(unsqueeze(x), E), rank 5 → expand at rank ≤ 4, its 1s left out")
