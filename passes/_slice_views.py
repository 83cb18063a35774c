"""A slice of a view that copies: the slice first, then the view.

    slice(view(x, s), d, a, b) → view(slice(x, d, a, b), s')

when the view is the slice's operand alone, keeps the axes up to d (so the slice takes the same
elements of x) and resizes the last axis — a copy on the ANE, whose buffers pad that axis — so
the copy moves the slice's part only, and the slice runs on x's unpadded last axis. Hiera's
query pooling regroups q of a fused qkv 1×1 conv (B, 3·C, 1, h·w) into (B, 3·C, h, w) for its
max pool and then takes q: 576 channels copied into rows of 8 (padded to 32) where 192 were read.

Why: a reshape that resizes the last axis and a slice on a padded last axis both move bytes
the ANE pads (docs/ane.md#principles, 3).
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.hardware import touches_last_axis
from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, normalize_dim, readers, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule


def _match_slice_of_view(node: Node) -> MatchResult:
    v = node.args[0]
    if not (is_op(v, *VIEWS) and isinstance(v.args[0], Node) and len(readers(v)) == 1):
        return MatchResult.skip()
    src, out = shape(v.args[0]), shape(v)
    if src is None or out is None or not touches_last_axis(tuple(src), tuple(out)):
        return MatchResult.skip()
    d = normalize_dim(arg(node, 1, "dim", 0), len(out))
    if arg(node, 4, "step", 1) != 1 or d >= len(src) - 1 or tuple(src[:d + 1]) != tuple(out[:d + 1]):
        return MatchResult.skip()
    return MatchResult.ok(x=v.args[0], d=d)


def _slice_before_view(rw, node: Node, m: dict) -> Node:
    part = rw.call(aten.slice.Tensor, m["x"], m["d"], *node.args[2:4])
    return rw.call(aten.reshape.default, part, list(shape(node)))


slice_before_view = Rule("slice_before_view", (aten.slice.Tensor,), _match_slice_of_view, _slice_before_view,
                         "slice(view(x, s), d, a, b) → view(slice(x, d, a, b), s') (d kept by the view, "
                         "its last axis resized: the copy moves the slice only)")
