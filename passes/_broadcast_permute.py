"""A permute of elementwise ops over broadcast operands moves onto the operands, where it is a
reshape.

    permute(f(a, b, …), p) → f(reshape(a), reshape(b), …)

f is any cone of elementwise ops (arithmetic, comparisons, casts, clamps, ``where``) each read
only inside the cone; a, b, … its leaves. The rule fires only when, for every leaf, broadcast to
the output's rank, the permute keeps its axes of size > 1 in their order: then it is a reshape
of that leaf, and no transpose is left. A padding mask built as an outer product
``m[:, None, :, None] · m[:, None, None, :]`` (DeBERTa) and transposed into the (B, K, 1, Q)
layout of the per-head logits is the case in point: one transpose of a (B, 1, S, S) tensor
fewer. A leaf with two axes of size > 1 that the permute swaps keeps the permute where it is.
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, is_op, rank, readers, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

ELEMENTWISE = (aten.add, aten.sub, aten.mul, aten.div, aten.rsub, aten.neg, aten.clamp, aten.clamp_min,
               aten.clamp_max, aten._to_copy, aten.bitwise_not, aten.logical_not, aten.bitwise_and,
               aten.bitwise_or, aten.logical_and, aten.logical_or, aten.eq, aten.ne, aten.lt, aten.le,
               aten.gt, aten.ge, aten.minimum, aten.maximum, aten.where, aten.exp, aten.tanh, aten.sigmoid)
MAX_CONE = 32


def _keeps_order(leaf_shape: tuple, perm: list[int]) -> bool:
    moved = [axis for axis in perm if leaf_shape[axis] != 1]
    return moved == sorted(moved)


def _cone(root: Node, r: int) -> tuple[list[Node], list[Node]] | None:
    """(the elementwise nodes from root up, root first; the tensor leaves) or None."""
    interior, leaves, stack = [], [], [root]
    while stack:
        n = stack.pop()
        if n in interior or n in leaves:
            continue
        inside = is_op(n, *ELEMENTWISE) and rank(n) == r and (n is root or all(u in interior for u in readers(n)))
        if inside and len(interior) < MAX_CONE:
            if is_op(n, aten._to_copy) and set(n.kwargs) - {"dtype"}:
                return None  # a copy to another device or memory format is not a plain cast
            interior.append(n)
            stack.extend(a for a in n.all_input_nodes)
        elif rank(n) is None or rank(n) > r:
            return None
        else:
            leaves.append(n)
    return interior, leaves


def _match(node: Node) -> MatchResult:
    root, perm = node.args[0], list(node.args[1])
    r = rank(node)
    if not is_op(root, *ELEMENTWISE) or len(readers(root)) != 1 or perm == list(range(r)):
        return MatchResult.skip()
    if _keeps_order(shape(root), perm):
        return MatchResult.skip()  # a reshape already: nothing to move
    found = _cone(root, r)
    if found is None:
        return MatchResult.skip()
    interior, leaves = found
    padded = {leaf: (1,) * (r - rank(leaf)) + shape(leaf) for leaf in leaves}
    if not all(_keeps_order(padded[leaf], perm) for leaf in leaves):
        return MatchResult.skip()
    return MatchResult.ok(interior=interior, padded=padded, perm=perm)


def _rewrite(rw, node: Node, m: dict) -> Node:
    perm, mapped = m["perm"], {}
    for leaf, s in m["padded"].items():
        target = [s[axis] for axis in perm]
        mapped[leaf] = leaf if list(shape(leaf)) == target else rw.call(aten.reshape.default, leaf, target)
    for n in sorted(m["interior"]):  # in graph order: operands first
        def sub(a):
            return mapped.get(a, a) if isinstance(a, Node) else a
        args = tuple(sub(a) if not isinstance(a, (list, tuple)) else type(a)(sub(x) for x in a) for a in n.args)
        mapped[n] = rw.call(n.target, *args, **n.kwargs)
    return mapped[m["interior"][0]]


permute_into_broadcasts = Rule(
    "permute_into_broadcasts", (aten.permute,), _match, _rewrite,
    "permute(f(a, b, …), p) → f(reshape(a), reshape(b), …) for elementwise f over broadcast operands")
