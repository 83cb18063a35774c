"""What a rotation turns, read through the steps between it and the head split: scalar factors
and a part of the token axis; and the model's rejoining of the turned part with the rest.

Glossary: B batch, C channels, H heads, D head size, S tokens, P prefix tokens (class, registers).

    a = c · heads(y)                         (q scaled before its rotation: ESM)
        → rope(a) = heads(y · c·cos + rot(y) · c·sin)       c folded into the (S, R) tables
    a = heads(y)[:, :, p:e]  or  split(heads(y), [P, S − P], 2)[1]   (the patch tokens only: EVA, DINOv3)
        → positions [p, e) of heads(y_rot)                  the tables hold cos 1, sin 0 elsewhere
    cat([part of heads(y_rot), the rest of heads(y)], d)  (slices, or the items of one split)
        → heads(y_rot)                                      y_rot is y outside what was turned

``operand`` peels the first two, in any order: a factor applied before the token cut scales the
rest too (cos is filled with it outside [p, e)), one applied after scales the turned part only.
Either way the factor rides on the small (S, R) tables, not on the (B, C, 1, S) activations, and
the rotation reads a head split again.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, is_op, normalize_dim, rank, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

PART_META = "ane_rotary_part"  # on the rotated part: (the rotated whole, the tensor its rest is read from)


@dataclass(frozen=True)
class Operand:
    whole: Node                      # the head split the rotation turns (positions [p, e) of it when given)
    positions: tuple[int, int] | None
    scale: float = 1.0               # a = scale · whole[positions]
    rest_scale: float = 1.0          # the factor of the tokens outside [p, e): rest_of = rest_scale · whole
    rest_of: Node | None = None      # the tensor the model cut the turned part from (its rest is not turned)


def _scalar_factor(node: Node) -> tuple[Node, float] | None:
    """mul(x, c) / mul(c, x) / div(x, c) with c a Python number → (x, c or 1/c)."""
    if is_op(node, aten.mul.Tensor, aten.mul.Scalar) and len(node.args) == 2:
        x, c = node.args
        if isinstance(x, (int, float)) and isinstance(c, Node):
            x, c = c, x
        if isinstance(x, Node) and isinstance(c, (int, float)) and not isinstance(c, bool):
            return x, float(c)
    if is_op(node, aten.div.Tensor, aten.div.Scalar) and len(node.args) == 2 and not node.kwargs:
        x, c = node.args
        if isinstance(x, Node) and isinstance(c, (int, float)) and not isinstance(c, bool) and c != 0:
            return x, 1.0 / float(c)
    return None


def part(node) -> tuple[Node, int, int, int] | None:
    """A unit-step slice of one axis, or one item of a split along it → (x, dim, start, end)."""
    if not isinstance(node, Node) or rank(node) is None:
        return None
    if is_op(node, aten.slice.Tensor):
        if len(node.args) > 4 and node.args[4] != 1:
            return None
        x, dim = node.args[0], normalize_dim(node.args[1] if len(node.args) > 1 else 0, rank(node))
        size = shape(x)[dim]
        start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
        end = node.args[3] if len(node.args) > 3 and node.args[3] is not None else size
        start, end = (v + size if v < 0 else v for v in (start, end))
        return x, dim, min(max(start, 0), size), min(max(end, 0), size)
    if node.op == "call_function" and node.target is operator.getitem \
            and is_op(node.args[0], aten.split.Tensor, aten.split_with_sizes):
        split, i = node.args
        x, sizes = split.args[0], split.args[1]
        dim = normalize_dim(split.args[2] if len(split.args) > 2 else split.kwargs.get("dim", 0), rank(x))
        size = shape(x)[dim]
        if isinstance(sizes, int):  # split(x, n): pieces of n, the last one shorter
            sizes = [min(sizes, size - s) for s in range(0, size, sizes)]
        start = sum(sizes[:i])
        return x, dim, start, start + sizes[i]
    return None


def operand(a: Node, token_dim: int) -> Operand | None:
    """a as scale · whole[positions along token_dim] through scalar factors and at most one token
    part; None when a is neither (then a itself is the candidate)."""
    node, scale, rest_scale, positions, rest_of = a, 1.0, 1.0, None, None
    while True:
        factor = _scalar_factor(node)
        if factor is not None:
            node, c = factor
            scale *= c
            rest_scale *= c if positions is not None else 1.0  # a factor below the cut scales the rest too
            continue
        cut = part(node) if positions is None else None
        if cut is not None and cut[1] == token_dim:
            node, positions, rest_of = cut[0], cut[2:], cut[0]
            continue
        break
    if node is a:
        return None
    return Operand(node, positions, scale, rest_scale if positions is not None else scale, rest_of)


def _match_rejoin(node: Node) -> MatchResult:
    """cat([rotated part of x_rot, the rest of x], d) (in either order) → x_rot: outside the part
    a rotary rewrite turned, x_rot holds x's values (y · 1 + rot · 0)."""
    parts, r = node.args[0], rank(node)
    if not is_op(node, aten.cat) or len(parts) != 2 or r is None:
        return MatchResult.skip()
    dim = normalize_dim(node.args[1] if len(node.args) > 1 else 0, r)
    for rotated, rest in (parts, parts[::-1]):
        info = rotated.meta.get(PART_META) if isinstance(rotated, Node) else None
        cut, other = part(rotated), part(rest)
        if info is None or cut is None or other is None or cut[1] != dim or other[1] != dim:
            continue
        x_rot, x = info
        if cut[0] is not x_rot or other[0] is not x:
            continue
        first, second = (cut, other) if parts[0] is rotated else (other, cut)
        if first[2] == 0 and first[3] == second[2] and second[3] == shape(x)[dim]:
            return MatchResult.ok(x_rot=x_rot)
    return MatchResult.skip()


def _rewrite_rejoin(rw, node: Node, m: dict) -> Node:
    return m["x_rot"]


rejoin_slices = Rule("rejoin_slices", (aten.cat,), _match_rejoin, _rewrite_rejoin,
                     "cat([heads(y_rot)[..., :R], heads(y)[..., R:]], -1) → heads(y_rot) (also along the tokens: "
                     "slices or the items of a split)")
