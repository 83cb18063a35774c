"""The layout cost: one movement of the channels-first tensor instead of the views and
permutes before a conversion, when its copies move fewer bytes.

    to(moves(y)) → reshape(block swaps(reshape(y, F)), shape)

``moves`` is any chain of views, permutes and squeezes that ends in a ``to`` conversion (a
window partition of a channels-last map, say). It is replayed on an index tensor, factorised
as reshape → permute → reshape (``_movement``) and done as rank-≤4 block swaps of y. The
cost of each side is the bytes its copies move on the ANE — an op is a copy when it moves or
resizes the last axis, and the last axis is padded to 64 bytes (``hardware.shape_bytes``,
``hardware.touches_last_axis``) — so a small last axis can make the one movement dearer, and
then the rule does not fire.
"""
from __future__ import annotations

import math

import torch
from torch.fx import Node

from ane_rewrite.hardware import shape_bytes, touches_last_axis
from ane_rewrite.rewrite.graph import VIEWS, aten, is_op, readers, shape
from ane_rewrite.rewrite.match import requires
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._heads import MAX_INDEX_ELEMENTS, replay
from ._layouts import match_from, match_to
from ._movement import block_swaps, emit_block_swaps, factorize, merged

MOVES = (*VIEWS, aten.permute, aten.alias, aten.squeeze, aten.unsqueeze)


def _copy_bytes(src: tuple, dst: tuple, perm: list[int] | None = None) -> int:
    """The padded fp16 bytes an op reads and writes if it is a copy on the ANE — it moves or
    resizes the last axis, which is padded to 64 bytes — else 0."""
    if not touches_last_axis(src, dst, perm):
        return 0
    return shape_bytes(src, padded=True) + shape_bytes(dst, padded=True)


def _movement_path(node: Node) -> tuple[Node, list[Node], int, int] | None:
    """node = to(moves(y)): the nodes from node up to y's reader (node first), through every
    view/permute/squeeze; how many permutes go with node, and the bytes their copies move
    (those below the first node something else also reads, and ``from`` conversions, whose
    other readers propagation moves too); None when node is no ``to``."""
    if match_to(node) is None:
        return None
    path, cur, alive = [], node, False
    dying = cost = 0
    while is_op(cur, *MOVES) and isinstance(cur.args[0], Node):
        alive = alive or (cur is not node and len(readers(cur)) != 1)
        if not alive or match_from(cur) is not None:
            permute = is_op(cur, aten.permute)
            dying += permute
            cost += _copy_bytes(shape(cur.args[0]), shape(cur), list(cur.args[1]) if permute else None)
        path.append(cur)
        cur = cur.args[0]
    return cur, path, dying, cost


@requires(_movement_path)
def _match_movement(node: Node, y: Node, path: list[Node], dying: int, cost: int) -> MatchResult:
    y_shape = shape(y)
    if dying <= 2 or y_shape is None or math.prod(y_shape) > MAX_INDEX_ELEMENTS:
        return MatchResult.skip()  # a conversion pair, or one more permute: the other rules fold those
    index = replay(y, path, torch.arange(math.prod(y_shape)).view(y_shape))
    factors = factorize(index)
    if factors is None:
        return MatchResult.fail("the movement into the channels-first form is not a reshape-permute-reshape")
    sizes, perm = merged(*factors)
    steps = block_swaps(sizes, perm)
    new_cost, current = _copy_bytes(tuple(y_shape), tuple(sizes)), tuple(sizes)
    for dims, step_perm in steps:
        new_cost += _copy_bytes(current, tuple(dims))
        current = tuple(dims[p] for p in step_perm)
        new_cost += _copy_bytes(tuple(dims), current, step_perm)
    new_cost += _copy_bytes(current, tuple(shape(node)))
    if new_cost >= cost:
        return MatchResult.skip()  # the padded last axes would make the one movement dearer
    return MatchResult.ok(y=y, sizes=sizes, steps=steps)


def _rewrite_movement(rw, node: Node, m: dict) -> Node:
    return emit_block_swaps(rw, rw.call(aten.reshape.default, m["y"], m["sizes"]), m["steps"], shape(node))


movement_in_layout = Rule(
    "movement_in_layout", (aten.permute, aten.unsqueeze), _match_movement, _rewrite_movement,
    "to(moves(y)) → reshape(block swaps(reshape(y, F))) when its copies move fewer (padded) bytes "
    "(a window partition of a channels-last map done on its channels-first form)")
