"""The per-head lowering every attention form ends in (``attention``'s docstring has the math).

``lower_per_head(rw, heads, scale, plan, transform)``: q, k, v as head splits of (B, C, 1, S)
tensors → per head, logits (B, K, 1, Q) = einsum of the scaled q and the transposed k,
``transform`` (the model's own steps between its product and its softmax, replayed on one
head's logits: softcapping, position biases, per-head scales), then the mask plan, the softmax
over the keys (axis 1) and the product with v; heads concatenated, returned as the (B, H, Q, d)
value sdpa returns.
"""
from __future__ import annotations

import operator
from typing import Callable

from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, shape

from ._masks import MaskPlan, row_valid

Transform = Callable[[object, Node, int], Node]  # (rw, logits_BK1Q, head) → logits_BK1Q


def pieces(rw, x: Node, bases: tuple[int, ...], d: int, axis: int) -> list[Node]:
    """x's channel blocks [base, base + d) on ``axis``, one per head (a split where they tile)."""
    width = shape(x)[axis]
    unique = sorted(set(bases))
    if width % d == 0 and unique == list(range(0, width, d)):
        parts = rw.call(aten.split_with_sizes.default, x, [d] * (width // d), axis)
        blocks = {base: rw.call(operator.getitem, parts, i) for i, base in enumerate(unique)}
    else:
        blocks = {base: rw.call(aten.slice.Tensor, x, axis, base, base + d) for base in unique}
    return [blocks[b] for b in bases]


def batch_first(rw, heads) -> Node:
    """The (B, C, 1, S) tensor the heads read: a sequence-first (S, C, 1, B) one is transposed,
    a (B, C, H, W) feature map is flattened to (B, C, 1, H·W)."""
    if heads.swapped:
        return rw.call(aten.permute.default, heads.source, [3, 1, 2, 0])
    if heads.spatial:
        b, c, rows, cols = shape(heads.source)
        return rw.call(aten.reshape.default, heads.source, [b, c, 1, rows * cols])
    return heads.source


def l2_normalize(rw, x: Node, axis: int, eps: float) -> Node:
    """x / clamp(‖x‖₂ over ``axis``, min=eps): F.normalize of one head's piece."""
    total = rw.call(aten.sum.dim_IntList, rw.call(aten.mul.Tensor, x, x), [axis], True)
    return rw.call(aten.div.Tensor, x, rw.call(aten.clamp.default, rw.call(aten.sqrt.default, total), eps))


def lower_per_head(rw, heads: dict, scale: float, plan: MaskPlan | None,
                   transform: Transform | None = None, norms: tuple = (None, None)) -> Node:
    """``norms``: the eps of an L2 normalisation of q and of k over each head's channels (cosine
    attention), None where there is none; a normalised q takes the scale after its norm."""
    hq, hk, hv = heads["q"], heads["k"], heads["v"]
    q_BC1Q, k_BC1K, v_BC1K = (batch_first(rw, h) for h in (hq, hk, hv))
    batch, _, _, sq = shape(q_BC1Q)
    q_eps, k_eps = norms
    if scale != 1.0 and q_eps is None:
        q_BC1Q = rw.call(aten.mul.Tensor, q_BC1Q, scale)
    k_BK1C = rw.call(aten.permute.default, k_BC1K, [0, 3, 2, 1])   # the one transpose of K
    qs = pieces(rw, q_BC1Q, hq.bases, hq.dim, 1)
    ks = pieces(rw, k_BK1C, hk.bases, hk.dim, 3)
    if q_eps is not None:
        qs = [l2_normalize(rw, q_h, 1, q_eps) for q_h in qs]
        qs = qs if scale == 1.0 else [rw.call(aten.mul.Tensor, q_h, scale) for q_h in qs]
    if k_eps is not None:
        ks = [l2_normalize(rw, k_h, 3, k_eps) for k_h in ks]
    vs = pieces(rw, v_BC1K, hv.bases, hv.dim, 1)
    shared = plan is not None and len(plan.adds) == 1
    outs = []
    for h, (q_h, k_h, v_h) in enumerate(zip(qs, ks, vs)):
        logits_BK1Q = rw.call(aten.einsum.default, "bchq,bkhc->bkhq", [q_h, k_h])
        if transform is not None:
            logits_BK1Q = transform(rw, logits_BK1Q, h)
        if plan is not None:
            add_BK1Q = plan.adds[0 if shared else h]
            logits_BK1Q = rw.call(aten.add.Tensor, logits_BK1Q, add_BK1Q)
            if plan.empty_rows:
                logits_BK1Q = _uniform_where_empty(rw, plan, h, logits_BK1Q, add_BK1Q)
        weights_BK1Q = rw.call(aten._softmax.default, logits_BK1Q, 1, False)
        out_Bd1Q = rw.call(aten.einsum.default, "bkhq,bchk->bchq", [weights_BK1Q, v_h])
        if plan is not None and plan.zero_rows and not shared:
            out_Bd1Q = rw.call(aten.mul.Tensor, out_Bd1Q, row_valid(rw, plan.adds[h]))
        outs.append(out_Bd1Q)
    out_BC1Q = rw.call(aten.cat.default, outs, 1)
    if plan is not None and plan.zero_rows and shared:
        out_BC1Q = rw.call(aten.mul.Tensor, out_BC1Q, row_valid(rw, plan.adds[0]))
    out_BHdQ = rw.call(aten.reshape.default, out_BC1Q, [batch, len(hq.bases), hv.dim, sq])
    return rw.call(aten.permute.default, out_BHdQ, [0, 1, 3, 2])            # (B, H, Q, d)


def _uniform_where_empty(rw, plan: MaskPlan, h: int, logits_BK1Q: Node, add_BK1Q: Node) -> Node:
    """A query whose keys are all masked by dtype-min entries: torch's logits there all equal
    the row's highest mask value (it absorbs the product) or lie below it, so its softmax is
    uniform over the keys at that value. Such a row's logits become add − max(add): 0 at those
    keys, ≤ −1e4 at the others; every other row keeps its logits."""
    top = rw.call(aten.amax.default, add_BK1Q, [1], True)                          # (Bm, 1, 1, Q)
    empty = rw.call(aten.rsub.Scalar, row_valid(rw, add_BK1Q), 1.0)
    if plan.absorbed:
        empty = rw.call(aten.mul.Tensor, empty, plan.absorbed[0 if len(plan.absorbed) == 1 else h])
    ties = rw.call(aten.sub.Tensor, add_BK1Q, top)
    kept = rw.call(aten.mul.Tensor, logits_BK1Q, rw.call(aten.rsub.Scalar, empty, 1.0))
    return rw.call(aten.add.Tensor, kept, rw.call(aten.mul.Tensor, ties, empty))
