"""RMSNorm as one channel LayerNorm: ``cat([y, −y])`` has mean zero, so its layer norm is y's
RMS norm.

    w · (x · rsqrt(mean₋₁(x²) + eps))        (x² as pow(x, 2) or x · x; w optional, any (C,)
                                              tensor: Gemma's (1 + w) too)
        → from(slice₁(norm₁(cat₁([y, −y])), 0, C) · w.view(C, 1, 1))     y = x's channels-first form

    the same over the head axis of a head split x = view(z_BSC, [B, S, H, d]) (QK-norm; or of its
    (B, H, S, d) transpose, as Gemma 3 normalises):
        → permute(reshape(reshape(slice₁(norm₁(cat₁([t, −t])), 0, d), [B, C, 1, S]) · tile_H(w),
                          [B, H, d, S]), [0, 3, 1, 2])
          with t = reshape(permute(x, [0, 2, 3, 1]), [B·H, d, 1, S]): each head normalised on its
          own; the weight is applied on (B, C, 1, S), so q and k stay head splits of one tensor

A LayerNorm over the head axis of such a head split (QK-norm as a LayerNorm: Persimmon,
Cohere-like) is kept per head the same way, its weight and bias tiled over the heads.

norm₁ is the channel norm ``layer_norm`` emits (mean over dim 1, the model's eps), which the
export fuses into one MIL ``layer_norm``. Over 2C channels, mean(cat([y, −y])) = 0 and
mean(cat([y, −y])²) = mean(y²): the value is the RMS norm's, to rounding. The pass runs before
``layout``, on the model's own channels-last values: each norm is wrapped in ``to``/``from``
conversions that layout's propagation then cancels against its neighbours'.

Why: the pow/mean/rsqrt chain squares activations in fp16, which overflows once |x| > 256
(docs/ane.md#modern-decoders); one layer_norm is one ANE op that normalises without forming x²
in fp16 (the range it holds on the device is Apple's layer_norm's: not measured here).
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, is_op, normalize_dim, rank, readers, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._heads import _chain
from ._layouts import RANKS, emit_from, emit_to
from .layer_norm import emit_channel_norm


def _square_of(node: Node) -> Node | None:
    if is_op(node, aten.pow.Tensor_Scalar) and node.args[1] == 2:
        return node.args[0]
    if is_op(node, aten.mul.Tensor) and node.args[0] is node.args[1]:
        return node.args[0]
    return None


def _normalised(node: Node):
    """node = x · rsqrt(mean₋₁(x²) + eps) → (x, eps), else None."""
    if not is_op(node, aten.mul.Tensor) or len(node.args) != 2:
        return None
    for x, r in (node.args, node.args[::-1]):
        if not (is_op(r, aten.rsqrt) and is_op(r.args[0], aten.add.Tensor, aten.add.Scalar)):
            continue
        mean, eps = r.args[0].args[:2]
        if not (is_op(mean, aten.mean.dim) and isinstance(eps, (int, float)) and arg(mean, 2, "keepdim", False)):
            continue
        dims = list(mean.args[1])
        if len(dims) == 1 and normalize_dim(dims[0], rank(x)) == rank(x) - 1 and _square_of(mean.args[0]) is x:
            return x, float(eps)
    return None


def _head_split(x: Node) -> tuple[Node, bool] | None:
    """x (B, S, H, d), or its permute(…, [0, 2, 1, 3]) (B, H, S, d), computed by data movement from
    a (B, S, C) tensor (a head split of a projection, fused or not) → (the (B, S, H, d) value,
    whether x is heads-first), else None."""
    heads_first = is_op(x, aten.permute) and rank(x) == 4 and list(x.args[1]) == [0, 2, 1, 3]
    v = x.args[0] if heads_first else x
    if rank(v) != 4:
        return None
    source, chain = _chain(v)
    if not chain or rank(source) != 3 or tuple(shape(source)[:2]) != tuple(shape(v)[:2]):
        return None
    return v, heads_first


def _match(node: Node) -> MatchResult:
    if not readers(node):
        return MatchResult.skip()  # read by metadata asserts only: dead
    weight, normed = None, node
    if _normalised(node) is None:
        for w, n in (node.args, node.args[::-1]) if is_op(node, aten.mul.Tensor) else ():
            if isinstance(n, Node) and _normalised(n) is not None and len(readers(n)) == 1 \
                    and rank(w) == 1 and shape(w)[0] == shape(n)[-1]:
                weight, normed = w, n
                break
        else:
            return MatchResult.skip()
    elif any(_match(u).matched for u in readers(node) if u.op == "call_function"):
        return MatchResult.skip()  # the weight's product owns it
    x, eps = _normalised(normed)
    split = _head_split(x)
    if split is not None:
        return MatchResult.ok(x=split[0], heads_first=split[1], eps=eps, weight=weight)
    if rank(x) not in RANKS:
        return MatchResult.fail(f"normalises a rank-{rank(x)} tensor with no channels-first form")
    return MatchResult.ok(x=x, eps=eps, weight=weight)


def _rms_channels(rw, y: Node, eps: float) -> Node:
    """The RMS norm over dim 1 of a 4-D channels-first y, as a layer norm of cat([y, −y])."""
    both = rw.call(aten.cat.default, [y, rw.call(aten.neg.default, y)], 1)
    return rw.call(aten.slice.Tensor, emit_channel_norm(rw, both, eps), 1, 0, shape(y)[1])


def _per_head(rw, m: dict, normalise, affine) -> Node:
    """A norm over the d channels of each head of x (B, S, H, d): on (B·H, d, 1, S), its affine
    terms tiled to (B, C, 1, S) so that q and k stay head splits of one channels-first tensor."""
    b, s, h, d = shape(m["x"])
    t_BHdS = rw.call(aten.permute.default, m["x"], [0, 2, 3, 1])
    out = rw.call(aten.reshape.default, normalise(rw.call(aten.reshape.default, t_BHdS, [b * h, d, 1, s])),
                  [b, h * d, 1, s])
    for op, term in affine:
        if term is not None:
            tiled = rw.call(aten.expand.default, rw.call(aten.reshape.default, term, [1, d]), [h, d])
            out = rw.call(op, out, rw.call(aten.reshape.default, tiled, [h * d, 1, 1]))
    order = [0, 1, 3, 2] if m["heads_first"] else [0, 3, 1, 2]  # (B, H, S, d) or (B, S, H, d)
    return rw.call(aten.permute.default, rw.call(aten.reshape.default, out, [b, h, d, s]), order)


def _rewrite(rw, node: Node, m: dict) -> Node:
    w = m["weight"]
    if "heads_first" in m:
        return _per_head(rw, m, lambda t: _rms_channels(rw, t, m["eps"]), [(aten.mul.Tensor, w)])
    x = m["x"]
    y = emit_to(rw, x)
    out = _rms_channels(rw, y, m["eps"])
    if w is not None:
        out = rw.call(aten.mul.Tensor, out, rw.call(aten.reshape.default, w, [shape(y)[1], 1, 1]))
    return emit_from(rw, out, rank(x))


def _match_head_layer_norm(node: Node) -> MatchResult:
    split = _head_split(node.args[0])
    if split is None or len(node.args[1]) != 1:
        return MatchResult.skip()  # a channel LayerNorm: the layer_norm pass's, after layout
    return MatchResult.ok(x=split[0], heads_first=split[1], weight=arg(node, 2, "weight"),
                          bias=arg(node, 3, "bias"), eps=arg(node, 4, "eps", 1e-5))


def _rewrite_head_layer_norm(rw, node: Node, m: dict) -> Node:
    return _per_head(rw, m, lambda t: emit_channel_norm(rw, t, m["eps"]),
                     [(aten.mul.Tensor, m["weight"]), (aten.add.Tensor, m["bias"])])


rms_as_layer_norm = Rule("rms_as_layer_norm", (aten.mul,), _match, _rewrite,
                         "[w ·] x · rsqrt(mean(x²) + eps) → from(slice(norm₁(cat([y, −y]))) [· w])")

head_layer_norm = Rule("head_layer_norm", (aten.layer_norm,), _match_head_layer_norm, _rewrite_head_layer_norm,
                       "layer_norm(view(z, [B, S, H, d]), [d]) → per head on (B·H, d, 1, S), affine on (B, C, 1, S)")

rms_norm = Pass("rms_norm", [rms_as_layer_norm, head_layer_norm], __doc__)
