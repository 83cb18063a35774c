"""Patches as convolutions: the unfold of a feature map into non-overlapping patches, and the
fold back, as one convolution with one-hot weights instead of a permute of rank 5 or 6.

Glossary: A the axes in front that stay in place (batch × channels), (nh, ph) and (nw, pw) the
rows and columns split into patches of ph × pw, P = ph·pw, N = nh·nw.

    unfold  permute(x_A,nh,ph,nw,pw → A,ph,pw,nh,nw)
              → reshape(conv2d(reshape(x, [1, A, nh·ph, nw·pw]), eye_P, stride (ph, pw), groups A),
                        the permute's shape)
    fold    permute(x_A,ph,pw,nh,nw → A,nh,ph,nw,pw)
              → reshape(conv_transpose2d(reshape(x, [1, A·P, nh, nw]), eye_P, stride (ph, pw),
                        groups A), the permute's shape)

``eye_P`` (``one_hot_kernel``) is (A·P, 1, ph, pw): output channel a·P + i·pw + j of group a
takes pixel (i, j) of each patch — exact in any precision (one product by 1, the rest by 0). MobileViT v2 splits its
map this way (timm: reshape, permute of rank 6, reshape; ``F.unfold`` in Apple's ml-cvnets),
which coremltools converts as transposes of rank 5 and ``windows`` would otherwise split into two
rank-4 block swaps per unfold or fold. Apple's Core ML path for the same block does the unfold
as exactly this grouped convolution ("im2col is not implemented in Coreml", apple/ml-cvnets,
cvnets/modules/mobilevit_block.py, ``unfolding_coreml``). The rule fires where the estimator
prices the convolution no dearer than the block swaps on every chip (a wide patch reads P
weights per output: declined with the figures, and ``low_rank_permute`` takes it).
"""
from __future__ import annotations

import math

import torch
from torch.fx import Node

from ane_rewrite.cost import Work, ane_total_us
from ane_rewrite.hardware import CHIPS, shape_bytes
from ane_rewrite.rewrite.graph import aten, shape, val
from ane_rewrite.rewrite.rules import COST, MatchResult, Rule

from ._layouts import normalize_dims_ordered
from ._low_rank import _without_unit_axes
from ._movement import block_swaps, merged

UNFOLD, FOLD = [0, 2, 4, 1, 3], [0, 3, 1, 4, 2]


def _merged(node: Node) -> tuple[list[int], list[int]]:
    sizes = list(shape(node.args[0]))
    perm = normalize_dims_ordered(node.args[1], len(sizes))
    sizes, perm = merged(*_without_unit_axes(sizes, perm))
    if len(perm) == 4:  # no axis in front stays: A = 1
        sizes, perm = [1, *sizes], [0, *(p + 1 for p in perm)]
    return sizes, perm


def _forms(sizes: list[int], perm: list[int], unfold: bool) -> tuple[list[Work], list[Work]]:
    """The work of the block swaps and of the convolution."""
    swaps = [Work("other", 0.0, 2 * shape_bytes(tuple(dims), padded=True)) for dims, _ in block_swaps(sizes, perm)]
    a = sizes[0]
    ph, pw, nh, nw = (sizes[2], sizes[4], sizes[1], sizes[3]) if unfold else (sizes[1], sizes[2], sizes[3], sizes[4])
    image, patches = (1, a, nh * ph, nw * pw), (1, a * ph * pw, nh, nw)
    conv = Work("compute", 2.0 * math.prod(patches) * ph * pw if unfold else float(math.prod(image)),
                shape_bytes(image, padded=True) + shape_bytes(patches, padded=True), shape_bytes((a * ph * pw, ph * pw)))
    return swaps, [conv]


def _match(node: Node) -> MatchResult:
    if len(shape(node) or ()) < 5:
        return MatchResult.skip()
    sizes, perm = _merged(node)
    if perm not in (UNFOLD, FOLD):
        return MatchResult.skip()
    unfold = perm == UNFOLD
    swaps, conv = _forms(sizes, perm, unfold)
    for chip in CHIPS.values():
        moved, convolved = ane_total_us(swaps, chip), ane_total_us(conv, chip)
        if convolved > moved:
            return MatchResult.fail(f"the {'unfold' if unfold else 'fold'} as a convolution is estimated slower than "
                                    f"its block swaps ({convolved:.1f} µs vs {moved:.1f} µs on {chip.name}): left "
                                    "to low_rank_permute", COST)
    return MatchResult.ok(sizes=sizes, unfold=unfold)


def one_hot_kernel(a: int, ph: int, pw: int, dtype: torch.dtype) -> torch.Tensor:
    """(a·P, 1, ph, pw): output channel c·P + i·pw + j of group c takes tap (i, j)."""
    return torch.eye(ph * pw, dtype=dtype).reshape(ph * pw, 1, ph, pw).repeat(a, 1, 1, 1)


def _rewrite(rw, node: Node, m: dict) -> Node:
    sizes, dtype = m["sizes"], val(node).dtype
    a = sizes[0]
    if m["unfold"]:
        _, nh, ph, nw, pw = sizes
        image = rw.call(aten.reshape.default, node.args[0], [1, a, nh * ph, nw * pw])
        eye = rw.constant("unfold", one_hot_kernel(a, ph, pw, dtype))
        out = rw.call(aten.conv2d.default, image, eye, None, [ph, pw], [0, 0], [1, 1], a)
    else:
        _, ph, pw, nh, nw = sizes
        patches = rw.call(aten.reshape.default, node.args[0], [1, a * ph * pw, nh, nw])
        eye = rw.constant("fold", one_hot_kernel(a, ph, pw, dtype))
        out = rw.call(aten.conv_transpose2d.input, patches, eye, None, [ph, pw], [0, 0], [0, 0], a)
    return rw.call(aten.reshape.default, out, list(shape(node)))


patches_as_conv = Rule("patches_as_conv", (aten.permute,), _match, _rewrite,
                       "unfold / fold of non-overlapping patches (a permute of rank ≥ 5) → one grouped "
                       "conv2d / conv_transpose2d with one-hot weights")
