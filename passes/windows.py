"""Windows: permutes of rank ≥ 5 (window/grid partition and reverse) as transposes of rank ≤ 4, and the
ops that read them at rank ≥ 5 on rank-≤4 views.

    permute(x_A0…An, p)       (n ≥ 5, e.g. Swin's (B, H/w, w, W/w, w, C) → (0, 1, 3, 2, 4, 5))
        → a few steps  reshape(t, [pre, X, Y, post]) → permute([0, 2, 1, 3])
          then reshape(·, shape of the original permute)

The permutation is built by insertion: each step moves the next axis of the target order in
front of the axes it must pass (a block swap of X and Y between a fixed prefix and suffix), so
every step is a rank-≤4 transpose; axes of size 1 are left out and axes that move together are
merged first (``_movement.merged``): Swin's window partition and reverse take one step, MaxViT's
grid partition two, a fused qkv split (B, S, 3, H, d) → (3, B, H, d, S) at batch 1 one. Generic over the chain: no
window size, layout or model is assumed. With cleanup's rules in the same fixpoint, the rank-6
views around the permute fold into the new reshapes and a ``clone`` (a contiguity copy, no
change of value) between them is dropped, so no rank > 4 tensor is left on the chain.

The unfold of a feature map into non-overlapping patches and the fold back (MobileViT v2's) are
one grouped convolution each with one-hot weights where that is estimated no slower
(``_patch_convs``): no transpose at all. ``F.unfold`` and ``F.fold`` themselves (``im2col`` /
``col2im``, of any kernel, dilation, padding and stride, overlapping windows too: VOLO) are one
grouped ``conv2d`` / ``conv_transpose2d`` with the same one-hot weights (``_unfold_convs``).

The ops that read a partition while its axes are still split (Twins' qkv linear on the
(B, h, w, ws, ws, C) windows, its unbind of a rank-6 fused split, an sdpa over (B, G, H, S, d),
Hiera's query pooling ``amax`` at rank 6) run on a rank-≤4 view of it (``_rank_views``); so does a
matmul of rank ≥ 5 (VOLO's (B, H, N, k², k²) @ (B, H, N, k², d): ``_rank_matmul``).

Shifted windows roll the feature map: coremltools converts ``roll`` into ``gather`` ops (two per
rolled axis), which the ANE placement rules send to the CPU. A roll by s along an axis of size n
is the concatenation of two slices, x[n − s:] then x[:n − s]: exact, and no gather.

    roll(x, s, d)               → cat([slice(x, d, n − s, n), slice(x, d, 0, n − s)], d)
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._low_rank import low_rank_permute
from ._patch_convs import patches_as_conv
from ._rank_matmul import low_rank_matmul
from ._rank_views import RANK_VIEW_RULES
from ._unfold_convs import UNFOLD_CONV_RULES
from .cleanup import CANONICAL_RULES, drop_clone


def _match_roll(node: Node) -> MatchResult:
    shifts, dims = list(node.args[1]), list(node.args[2]) if len(node.args) > 2 else []
    if not dims or len(dims) != len(shifts):
        return MatchResult.fail("roll over the flattened tensor (no dims) has no slice form")
    return MatchResult.ok(x=node.args[0], shifts=shifts, dims=dims)


def _rewrite_roll(rw, node: Node, m: dict) -> Node:
    t = m["x"]
    for shift, dim in zip(m["shifts"], m["dims"]):
        size = shape(t)[dim]
        cut = size - shift % size  # the last (shift mod size) entries come first
        if cut == size:
            continue
        tail = rw.call(aten.slice.Tensor, t, dim, cut, size)
        head = rw.call(aten.slice.Tensor, t, dim, 0, cut)
        t = rw.call(aten.cat.default, [tail, head], dim)
    return t if t is not m["x"] else rw.call(aten.alias.default, t)


roll_as_slices = Rule("roll_as_slices", (aten.roll,), _match_roll, _rewrite_roll,
                      "roll(x, s, d) → cat([x[d: n−s:], x[d: :n−s]], d)")

windows = Pass("windows", [*UNFOLD_CONV_RULES, patches_as_conv, low_rank_permute, *RANK_VIEW_RULES, low_rank_matmul, roll_as_slices, drop_clone, *CANONICAL_RULES], __doc__)
