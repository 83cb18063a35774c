"""Layout propagation: once a linear is a conv on a channels-first tensor, the ops after it
run on that tensor too, so the layout conversions meet and cancel at the region's borders.

    f(from(y))                              → from(f(y))            f elementwise unary (comparisons with a number too)
    g(from(a), from(b))                     → from(g(a, b))         g elementwise binary
    where(from(c), from(a), t)              → from(where(c, a, to(t)))
    g(from(a), t)                           → from(g(a, to(t)))     t broadcastable, rank padded
    slice(from(y), d, ...)                  → from(slice(y, d', ...))
    cat([from(a), from(b), …], d)           → from(cat([a, b, …], d'))
    to(cat([a, b, …], d)), to(slice(x, d))  → cat([to(a), …], d'), slice(to(x), d')
    select(from(y), 1, i)                   → from(slice(y, axis, i, i + 1))
    view(from(y_BC1S), [B, S, c1, …, ck])   → permute(reshape(y, [B, c1, …, ck, S]), [0, k+1, 1, …, k])
    view(from(y_BCHW), [B, H·W, C])         → from(reshape(y, [B, C, 1, H·W]))   (and back)
    to(view(x_BSc1…ck, [B, S, C]))          → reshape(permute(x, [0, 2, …, k+1, 1]), [B, C, 1, S])
    to(moves(y))                            → one movement of y (``_layout_cost``)
    tokens of a map, means over the tokens  → ``_token_maps``

Why: every conversion left inside a region is a transpose that touches the last axis — a real
copy on the ANE (docs/ane.md#principles, 3). ``from``/``to`` are ``_layouts``' conversions;
the rules are shared by every pass that emits a ``from`` (layout, layer_norm).
"""
from __future__ import annotations

import math

from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, normalize_dim, rank, readers, shape
from ane_rewrite.rewrite.match import requires
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._layout_cost import movement_in_layout
from ._token_maps import TOKEN_MAP_RULES
from ._layouts import AXIS_MAP, emit_broadcast_to, emit_from, emit_to, from_operand, match_from, match_to
from .cleanup import CANONICAL_RULES


UNARY = (
    aten.relu, aten.gelu, aten.silu, aten.sigmoid, aten.tanh, aten.hardswish, aten.hardsigmoid,
    aten.hardtanh, aten.leaky_relu, aten.elu, aten.erf, aten.exp, aten.neg, aten.abs, aten.sqrt,
    aten.rsqrt, aten.clone, aten.alias, aten.clamp, aten.pow.Tensor_Scalar, aten.mul.Scalar,
    aten.add.Scalar, aten.sub.Scalar, aten.div.Scalar, aten.expm1, aten.log1p, aten.log, aten.reciprocal,
    aten.softplus, aten.mish, aten.gt.Scalar, aten.ge.Scalar, aten.lt.Scalar, aten.le.Scalar,
)


@requires(from_operand)
def _match_unary(node: Node, y: Node, r: int) -> MatchResult:
    if any(isinstance(a, Node) for a in list(node.args[1:]) + list(node.kwargs.values())):
        return MatchResult.skip()
    return MatchResult.ok(y=y, r=r)


def _rewrite_unary(rw, node: Node, m: dict) -> Node:
    out = rw.call(node.target, m["y"], *node.args[1:], **node.kwargs)
    return emit_from(rw, out, m["r"])


sink_unary = Rule("sink_unary", UNARY, _match_unary, _rewrite_unary, "f(from(y)) → from(f(y))")

BINARY = (aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor,
          aten.maximum, aten.minimum)


def _match_binary(node: Node) -> MatchResult:
    a, b = node.args[:2]
    fa = match_from(a) if isinstance(a, Node) else None
    fb = match_from(b) if isinstance(b, Node) else None
    if fa is None and fb is None:
        return MatchResult.skip()
    if fa is not None and fb is not None:
        if fa[1] != fb[1] or shape(a) != shape(b):
            return MatchResult.fail(f"operands {shape(a)} and {shape(b)} differ in shape")
        return MatchResult.ok(operands=(fa[0], fb[0]), r=fa[1])
    (conv_idx, (y, r)), other = ((0, fa), b) if fa is not None else ((1, fb), a)
    if isinstance(other, Node):
        if rank(other) is None:
            return MatchResult.fail("the other operand has no tensor value")
        if rank(other) > r:
            return MatchResult.fail(f"the other operand has rank {rank(other)} > {r}")
        if rank(node) != r:
            return MatchResult.fail("broadcasting changes the rank")
    return MatchResult.ok(y=y, r=r, other=other, pos=conv_idx)


def _rewrite_binary(rw, node: Node, m: dict) -> Node:
    r = m["r"]
    if "operands" in m:
        args = m["operands"]
    else:
        other = m["other"]
        if isinstance(other, Node) and rank(other) > 0:
            other = emit_broadcast_to(rw, other, r)
        args = (m["y"], other) if m["pos"] == 0 else (other, m["y"])
    out = rw.call(node.target, *args, *node.args[2:], **node.kwargs)
    return emit_from(rw, out, r)


sink_binary = Rule("sink_binary", BINARY, _match_binary, _rewrite_binary,
                   "g(from(a), from(b)) → from(g(a, b)); g(from(a), t) → from(g(a, to(t)))")


def _match_where(node: Node) -> MatchResult:
    """where(c, a, b) with one operand at least a conversion of the node's shape; the others
    conversions of the same form, broadcastable tensors of rank ≤ r, or numbers."""
    found = [match_from(a) if isinstance(a, Node) else None for a in node.args[:3]]
    forms = {f[1] for a, f in zip(node.args, found) if f is not None and shape(a) == shape(node)}
    if len(forms) != 1:
        return MatchResult.skip()
    r = forms.pop()
    operands = []
    for a, f in zip(node.args[:3], found):
        if not isinstance(a, Node):
            operands.append(("as is", a))
        elif f is not None and f[1] == r and shape(a) == shape(node):
            operands.append(("converted", f[0]))
        elif rank(a) is not None and rank(a) <= r:
            operands.append(("to", a))
        else:
            return MatchResult.fail(f"operand {a.name} {shape(a)} does not broadcast against {shape(node)}")
    return MatchResult.ok(operands=operands, r=r)


def _rewrite_where(rw, node: Node, m: dict) -> Node:
    args = [emit_broadcast_to(rw, a, m["r"]) if how == "to" and rank(a) > 0 else a for how, a in m["operands"]]
    return emit_from(rw, rw.call(aten.where.self, *args), m["r"])


sink_where = Rule("sink_where", (aten.where.self,), _match_where, _rewrite_where,
                  "where(from(c), from(a), t) → from(where(c, a, to(t)))")


@requires(from_operand)
def _match_slice(node: Node, y: Node, r: int) -> MatchResult:
    dim = normalize_dim(arg(node, 1, "dim", 0), r)
    return MatchResult.ok(y=y, r=r, dim=AXIS_MAP[r][dim])


def _rewrite_slice(rw, node: Node, m: dict) -> Node:
    rest = list(node.args[2:])
    out = rw.call(aten.slice.Tensor, m["y"], m["dim"], *rest)
    return emit_from(rw, out, m["r"])


def _match_cat(node: Node) -> MatchResult:
    parts = node.args[0]
    found = [match_from(p) if isinstance(p, Node) else None for p in parts]
    if not found or any(f is None for f in found):
        return MatchResult.skip()
    ranks = {f[1] for f in found}
    if len(ranks) != 1:
        return MatchResult.fail("the concatenated tensors come from different channels-first forms")
    r = ranks.pop()
    dim = normalize_dim(arg(node, 1, "dim", 0), r)
    return MatchResult.ok(ys=[f[0] for f in found], r=r, dim=AXIS_MAP[r][dim])


def _rewrite_cat(rw, node: Node, m: dict) -> Node:
    return emit_from(rw, rw.call(aten.cat.default, m["ys"], m["dim"]), m["r"])


sink_cat = Rule("sink_cat", (aten.cat,), _match_cat, _rewrite_cat,
                "cat([from(a), from(b), …], d) → from(cat([a, b, …], d'))")

@requires(match_to)
def _match_hoist(node: Node, x: Node, r: int) -> MatchResult:
    if not is_op(x, aten.cat, aten.slice.Tensor) or len(readers(x)) != 1:
        return MatchResult.skip()
    dim = normalize_dim(arg(x, 1, "dim", 0), r)
    return MatchResult.ok(x=x, r=r, dim=AXIS_MAP[r][dim])


def _rewrite_hoist(rw, node: Node, m: dict) -> Node:
    x = m["x"]
    if is_op(x, aten.cat):
        return rw.call(aten.cat.default, [emit_to(rw, p) for p in x.args[0]], m["dim"])
    return rw.call(aten.slice.Tensor, emit_to(rw, x.args[0]), m["dim"], *x.args[2:])


hoist_cat_slice = Rule("hoist_cat_slice", (aten.permute, aten.unsqueeze), _match_hoist, _rewrite_hoist,
                       "to(cat([a, b, …], d)) → cat([to(a), to(b), …], d'); to(slice(x, d, …)) → slice(to(x), d', …)")

sink_slice = Rule("sink_slice", (aten.slice.Tensor,), _match_slice, _rewrite_slice,
                  "slice(from(y), d, ...) → from(slice(y, d', ...))")


@requires(from_operand)
def _match_select(node: Node, y: Node, r: int) -> MatchResult:
    dim = normalize_dim(node.args[1], r)
    if r not in (3, 4) or dim != 1:
        return MatchResult.fail(f"selecting axis {dim} of a rank-{r} channels-last tensor "
                                "leaves no channels-first form")
    axis = AXIS_MAP[r][dim]
    size = shape(y)[axis]
    index = node.args[2] + size if node.args[2] < 0 else node.args[2]
    return MatchResult.ok(y=y, r=r, axis=axis, index=index)


def _rewrite_select(rw, node: Node, m: dict) -> Node:
    out = rw.call(aten.slice.Tensor, m["y"], m["axis"], m["index"], m["index"] + 1)
    if m["r"] == 3:  # (B, C, 1, 1) → (B, C)
        return emit_from(rw, out, 2)
    return emit_from(rw, out, 3)  # (B, C, 1, W) → (B, W, C)


sink_select = Rule("sink_select", (aten.select.int,), _match_select, _rewrite_select,
                   "select(from(y), 1, i) → from(slice(y, axis, i, i + 1))")


def _split_factors(x_shape: tuple, v_shape: tuple) -> list[int] | None:
    """v = view(x) keeps x's leading axes and splits its last axis → the factors, else None."""
    lead = len(x_shape) - 1
    if len(v_shape) <= len(x_shape) or tuple(v_shape[:lead]) != tuple(x_shape[:lead]):
        return None
    factors = list(v_shape[lead:])
    return factors if math.prod(factors) == x_shape[-1] else None


@requires(from_operand)
def _match_split_view(node: Node, y: Node, r: int) -> MatchResult:
    factors = _split_factors(shape(node.args[0]), shape(node))
    if factors is None:
        return MatchResult.skip()
    return MatchResult.ok(y=y, r=r, factors=factors)


def _rewrite_split_view(rw, node: Node, m: dict) -> Node:
    y, r, factors = m["y"], m["r"], m["factors"]
    k = len(factors)
    spatial = list(shape(node)[1:r - 1])  # the channels-last tensor's middle axes
    heads_first = rw.call(aten.reshape.default, y, [shape(y)[0], *factors, *spatial])
    order = [0, *range(k + 1, k + 1 + len(spatial)), *range(1, k + 1)]
    if order == list(range(len(order))):
        return heads_first
    return rw.call(aten.permute.default, heads_first, order)


sink_split_view = Rule(
    "sink_split_view", VIEWS, _match_split_view, _rewrite_split_view,
    "view(from(y_BC1S), [B, S, c1, …]) → permute(reshape(y, [B, c1, …, S]), [0, k+1, 1, …, k])")


@requires(match_to)
def _match_merge_view(node: Node, v: Node, r: int) -> MatchResult:
    if not is_op(v, *VIEWS):
        return MatchResult.skip()
    x = v.args[0]
    factors = _split_factors(shape(v), shape(x))
    if factors is None:
        return MatchResult.skip()
    return MatchResult.ok(x=x, r=r, k=len(factors))


def _rewrite_merge_view(rw, node: Node, m: dict) -> Node:
    x, r, k = m["x"], m["r"], m["k"]
    n_spatial = r - 2
    order = [0, *range(1 + n_spatial, 1 + n_spatial + k), *range(1, 1 + n_spatial)]
    return rw.call(aten.reshape.default, rw.call(aten.permute.default, x, order), list(shape(node)))


hoist_merge_view = Rule(
    "hoist_merge_view", (aten.permute, aten.unsqueeze), _match_merge_view, _rewrite_merge_view,
    "to(view(x, [B, S, c1·…·ck])) → reshape(permute(x, [0, c-axes…, S]), [B, C, 1, S])")

@requires(from_operand)
def _match_spatial_view(node: Node, y: Node, r: int) -> MatchResult:
    x_shape, out = shape(node.args[0]), shape(node)
    if r == 4 and len(out) == 3 and out == (x_shape[0], x_shape[1] * x_shape[2], x_shape[3]):
        return MatchResult.ok(y=y, cf_shape=[out[0], out[2], 1, out[1]], r=3)      # (B, C, 1, H·W)
    if r == 3 and len(out) == 4 and (out[0], out[3]) == (x_shape[0], x_shape[2]) \
            and out[1] * out[2] == x_shape[1]:
        return MatchResult.ok(y=y, cf_shape=[out[0], out[3], out[1], out[2]], r=4)  # (B, C, H, W)
    return MatchResult.skip()


def _rewrite_spatial_view(rw, node: Node, m: dict) -> Node:
    return emit_from(rw, rw.call(aten.reshape.default, m["y"], m["cf_shape"]), m["r"])


sink_spatial_view = Rule(
    "sink_spatial_view", VIEWS, _match_spatial_view, _rewrite_spatial_view,
    "view(from(y_BCHW), [B, H·W, C]) → from(reshape(y, [B, C, 1, H·W])); "
    "view(from(y_BC1S), [B, H, W, C]) → from(reshape(y, [B, C, H, W]))")

# Shared with passes that emit ``from`` conversions of their own (layer_norm). Cleanup's
# canonical rules run in the same fixpoint: ``to(from(y))`` cancels through them (permute pairs
# fold away, squeeze/unsqueeze pairs cancel), no-op views cannot hide a ``from`` from its
# consumer, and a head split right after a conversion costs one transpose.
PROPAGATION_RULES = (sink_unary, sink_binary, sink_where, sink_slice, sink_cat, hoist_cat_slice, sink_select,
                     sink_split_view, sink_spatial_view, hoist_merge_view, movement_in_layout,
                     *TOKEN_MAP_RULES, *CANONICAL_RULES)
