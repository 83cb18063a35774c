"""permute of rank ≥ 5 → rank-≤4 block swaps (``windows``' rule; ``cleanup`` runs it too, for the
rank-5 permutes the later passes leave: a fused projection split at one token, whose batch and
sequence axes are both 1).

    permute(x_A0…An, p), n ≥ 5 → reshape(t, [pre, X, Y, post]) → permute([0, 2, 1, 3]) … → reshape

Axes of size 1 are left out and axes that move together are merged (``_movement.merged``); see
``windows``' docstring for the construction.
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.hardware import NATIVE_RANK
from ane_rewrite.rewrite.graph import aten, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._layouts import normalize_dims_ordered
from ._movement import block_swaps, emit_block_swaps, merged


def _without_unit_axes(sizes: list[int], perm: list[int]) -> tuple[list[int], list[int]]:
    """The same movement with the axes of size 1 left out (they move no data)."""
    kept = [a for a in range(len(sizes)) if sizes[a] != 1]
    return [sizes[a] for a in kept], [kept.index(a) for a in perm if sizes[a] != 1]


def _match(node: Node) -> MatchResult:
    out_shape = shape(node)
    if out_shape is None or len(out_shape) <= NATIVE_RANK:
        return MatchResult.skip()
    perm = normalize_dims_ordered(node.args[1], len(out_shape))
    sizes, perm = merged(*_without_unit_axes(list(shape(node.args[0])), perm))
    return MatchResult.ok(x=node.args[0], steps=block_swaps(sizes, perm))


def _rewrite(rw, node: Node, m: dict) -> Node:
    return emit_block_swaps(rw, m["x"], m["steps"], shape(node))


low_rank_permute = Rule("low_rank_permute", (aten.permute,), _match, _rewrite,
                        "permute of rank ≥ 5 → rank-≤4 block swaps")
