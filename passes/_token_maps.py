"""Propagation rules for feature maps read as tokens, and for reductions over the tokens.

    permute(view(y_BCHW, [B, C, H·W]), [0, 2, 1])   → from(reshape(y, [B, C, 1, H·W]))
    mean(from(y), dims, keepdim)                     → from(mean(y, dims', keepdim=True))

The first is how hybrid vision models (EfficientFormer, MobileViT, PVT) turn a convolution's
map into tokens: it is already a ``from`` conversion of the map's channels-first form, so the
norm and projections after it stay in the region instead of converting back. The second
lets a pooled head (the mean over the tokens) run on the channels-first tensor, where the
tokens are the last axes, instead of converting the whole sequence back first. A mean over
the channels has no channels-first result and is left alone.

Why: every conversion left inside a region is a transpose that touches the last axis
(docs/ane.md#principles, 3).
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, normalize_dims, shape
from ane_rewrite.rewrite.match import requires
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._layout_cost import MOVES
from ._layouts import AXIS_MAP, emit_from, from_operand


def _match_map_tokens(node: Node) -> MatchResult:
    x = node.args[0]
    if list(node.args[1]) not in ([0, 2, 1], [0, -1, -2]) or not is_op(x, *VIEWS):
        return MatchResult.skip()
    y = x.args[0]
    if is_op(y, *MOVES):
        return MatchResult.skip()  # heads being regrouped, not a feature map
    y_shape, x_shape = shape(y), shape(x)
    if y_shape is None or len(y_shape) != 4 or x_shape != (y_shape[0], y_shape[1], y_shape[2] * y_shape[3]):
        return MatchResult.skip()
    if 1 in y_shape[2:]:
        return MatchResult.skip()  # (B, C, 1, S): a conversion already, whatever spells its squeeze
    return MatchResult.ok(y=y, cf_shape=[y_shape[0], y_shape[1], 1, y_shape[2] * y_shape[3]])


def _rewrite_map_tokens(rw, node: Node, m: dict) -> Node:
    return emit_from(rw, rw.call(aten.reshape.default, m["y"], m["cf_shape"]), 3)


map_tokens = Rule("map_tokens", (aten.permute,), _match_map_tokens, _rewrite_map_tokens,
                  "permute(view(y_BCHW, [B, C, H·W]), [0, 2, 1]) → from(reshape(y, [B, C, 1, H·W]))")

# (channels-last rank, reduced axes, keepdim) → the channels-last rank of the result
_RESULTS = {(3, (1,), False): 2, (4, (1, 2), False): 2, (4, (1,), False): 3}


@requires(from_operand)
def _match_mean(node: Node, y: Node, r: int) -> MatchResult:
    dims = arg(node, 1, "dim", None)
    if dims is None:
        return MatchResult.skip()
    dims = tuple(sorted(normalize_dims(dims, r)))
    keepdim = bool(arg(node, 2, "keepdim", False))
    if 0 in dims or r - 1 in dims:
        return MatchResult.skip()  # over the batch or the channels: no channels-first result
    out_rank = r if keepdim else _RESULTS.get((r, dims, False))
    if out_rank is None:
        return MatchResult.skip()
    if arg(node, 3, "dtype", None) is not None or node.kwargs.get("dtype") is not None:
        return MatchResult.skip()
    return MatchResult.ok(y=y, axes=sorted(AXIS_MAP[r][d] for d in dims), out_rank=out_rank)


def _rewrite_mean(rw, node: Node, m: dict) -> Node:
    return emit_from(rw, rw.call(aten.mean.dim, m["y"], m["axes"], True), m["out_rank"])


sink_mean = Rule("sink_mean", (aten.mean.dim,), _match_mean, _rewrite_mean,
                 "mean(from(y), token axes) → from(mean(y, their channels-first axes, keepdim=True))")

TOKEN_MAP_RULES = (map_tokens, sink_mean)
