"""Channels-last ↔ channels-first conversions shared by the passes.

Glossary: B batch, S sequence, C channels, H/W spatial, O/I out/in channels.

A channels-last tensor of rank r has a 4-D channels-first form y_BCHW:

    r = 2   x_BC    ↔  y_BC11 = unsqueeze(unsqueeze(x, 2), 3)
    r = 3   x_BSC   ↔  y_BC1S = unsqueeze(permute(x, [0, 2, 1]), 2)
    r = 4   x_BHWC  ↔  y_BCHW = permute(x, [0, 3, 1, 2])

``emit_to`` builds the right-hand side, ``emit_from`` the inverse (squeeze / permute back).
``match_to`` and ``match_from`` recognise both directions structurally, whoever wrote them
(a pass, or the model itself: ConvNeXt's own ``permute(0, 2, 3, 1)`` is a ``from``).
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, is_op, normalize_dims, rank, shape

RANKS = (2, 3, 4)

# channels-last axis → channels-first axis, per channels-last rank
AXIS_MAP = {2: {0: 0, 1: 1}, 3: {0: 0, 1: 3, 2: 1}, 4: {0: 0, 1: 2, 2: 3, 3: 1}}

_SQUEEZE = (aten.squeeze,)


def squeezed_dims(node: Node) -> list[int] | None:
    """The axes a squeeze call actually removes, or None if ``node`` is no squeeze."""
    if not is_op(node, *_SQUEEZE):
        return None
    src = shape(node.args[0])
    if src is None:
        return None
    dims = arg(node, 1, "dim", None)
    dims = range(len(src)) if dims is None else normalize_dims(dims, len(src))
    return [d for d in dims if src[d] == 1]


def _permute_dims(node: Node) -> list[int] | None:
    if not is_op(node, aten.permute):
        return None
    src_rank = rank(node.args[0])
    return None if src_rank is None else normalize_dims_ordered(node.args[1], src_rank)


def normalize_dims_ordered(dims, ndim: int) -> list[int]:
    return [d + ndim if d < 0 else d for d in dims]


def _unsqueeze_dim(node: Node) -> int | None:
    if not is_op(node, aten.unsqueeze):
        return None
    return node.args[1] + rank(node) if node.args[1] < 0 else node.args[1]


def match_from(node: Node) -> tuple[Node, int] | None:
    """``node`` = from_r(y) for a 4-D channels-first y → (y, r), else None."""
    p = _permute_dims(node)
    if p == [0, 2, 3, 1] and rank(node.args[0]) == 4:
        return node.args[0], 4
    if p == [0, 2, 1]:
        inner = node.args[0]
        if squeezed_dims(inner) == [2] and rank(inner.args[0]) == 4:
            return inner.args[0], 3
        return None
    dims = squeezed_dims(node)
    if dims == [2, 3] and rank(node.args[0]) == 4:
        return node.args[0], 2
    if dims == [2] and rank(node.args[0]) == 3:
        inner = node.args[0]
        if squeezed_dims(inner) == [3] and rank(inner.args[0]) == 4:
            return inner.args[0], 2
    return None


def from_operand(node: Node) -> tuple[Node, int] | None:
    """``node``'s first operand = from_r(y) → (y, r), else None (a ``requires`` pattern)."""
    x = node.args[0] if node.args else None
    return match_from(x) if isinstance(x, Node) else None


def match_to(node: Node) -> tuple[Node, int] | None:
    """``node`` = to_r(x) for a channels-last x of rank r → (x, r), else None."""
    p = _permute_dims(node)
    if p == [0, 3, 1, 2] and rank(node.args[0]) == 4:
        return node.args[0], 4
    d = _unsqueeze_dim(node)
    if d == 2 and rank(node) == 4:
        inner = node.args[0]
        if _permute_dims(inner) == [0, 2, 1]:
            return inner.args[0], 3
        return None
    if d == 3 and rank(node) == 4:
        inner = node.args[0]
        if _unsqueeze_dim(inner) == 2 and rank(inner.args[0]) == 2:
            return inner.args[0], 2
    return None


def emit_to(rw, x: Node) -> Node:
    """x channels-last (rank 2, 3 or 4) → y, 4-D channels-first."""
    r = rank(x)
    if r == 2:
        return rw.call(aten.unsqueeze.default, rw.call(aten.unsqueeze.default, x, 2), 3)
    if r == 3:
        return rw.call(aten.unsqueeze.default, rw.call(aten.permute.default, x, [0, 2, 1]), 2)
    if r == 4:
        return rw.call(aten.permute.default, x, [0, 3, 1, 2])
    raise ValueError(f"no channels-first form for rank {r}")


# y 4-D channels-first → its channels-last form of rank r, as ATen steps: ``emit_from`` emits
# them in a graph, ``channels_last`` applies them to a tensor (the equivalence checker's inverse)
FROM_STEPS = {2: ((aten.squeeze.dims, [3]), (aten.squeeze.dims, [2])),
              3: ((aten.squeeze.dims, [2]), (aten.permute.default, [0, 2, 1])),
              4: ((aten.permute.default, [0, 2, 3, 1]),)}


def emit_from(rw, y: Node, r: int) -> Node:
    """y 4-D channels-first → its channels-last form of rank r.

    Marks y with ``meta["ane_channels_first_of"] = (origin, r)``: y holds, channels-first, the
    value of the original node ``origin`` (the anchor being replaced); the equivalence checker
    uses it to compare values inside a layout region with the original graph."""
    if r not in FROM_STEPS:
        raise ValueError(f"no channels-last form of rank {r}")
    anchor = rw.anchor
    y.meta.setdefault("ane_channels_first_of", (anchor.meta.get("ane_origin", anchor.name), r))
    for op, dims in FROM_STEPS[r]:
        y = rw.call(op, y, dims)
    return y


def channels_last(value, r: int):
    """A 4-D channels-first tensor → the channels-last rank-r tensor it stands for (``FROM_STEPS``)."""
    for op, dims in FROM_STEPS[r]:
        value = op(value, dims)
    return value


def emit_broadcast_to(rw, t: Node, r: int) -> Node:
    """An operand ``t`` that broadcasts against a channels-last rank-r tensor → its
    channels-first form (rank padded to r first; size-1 axes stay broadcastable)."""
    t_shape = shape(t)
    if len(t_shape) < r:
        t = rw.call(aten.reshape.default, t, [1] * (r - len(t_shape)) + list(t_shape))
    return emit_to(rw, t)
