"""Layout: linears become 1×1 convs on a channels-first 4-D layout, and the layout spreads.

Glossary: B batch, S sequence, C channels, H/W spatial, O/I out/in channels.

Conversions (weights are viewed in the graph; parameters keep their names and shapes; a weight
another op also reads — an LM head tied to the embedding table — is used as it is, in a matmul
on the channels-first layout, so the export holds one copy of it):

    linear(x_BSC, W, b)                     → from(conv2d(x_BC1S, W.view(O, I, 1, 1), b))
    linear(x_BC, W, b)                      → from(conv2d(x_BC11, W.view(O, I, 1, 1), b))
    linear(x_BHWC, W, b)                    → from(conv2d(x_BCHW, W.view(O, I, 1, 1), b))
    view(addmm(b, view(x_BSC, [B·S, I]), W_IO), [B, S, O])
                                            → from(conv2d(x_BC1S, W_IO.T.view(O, I, 1, 1), b))
        (x may also be (B, S, h, d) with h·d = I: a head merge folded into the flattening)
    addmm(b, x_BC, W_IO)                    → from(conv2d(x_BC11, W_IO.T.view(O, I, 1, 1), b))

where x_BC1S = to(x_BSC) and ``from`` is its inverse (see ``passes/_layouts.py``).

Propagation (to a fixpoint, so consecutive linears share one layout region):

    to(from(y))                             → y          (via cleanup's permute/squeeze rules)
    f(from(y))                              → from(f(y))            f elementwise unary
    g(from(a), from(b))                     → from(g(a, b))         g elementwise binary
    g(from(a), t)                           → from(g(a, to(t)))     t broadcastable, rank padded
    slice(from(y), d, ...)                  → from(slice(y, d', ...))
    cat([from(a), from(b), …], d)           → from(cat([a, b, …], d'))   (a roll's two halves)
    to(cat([a, b, …], d)), to(slice(x, d))  → cat([to(a), to(b), …], d'), slice(to(x), d')
    select(from(y_BC1S), 1, i)              → from(slice(y, 3, i, i + 1))   (B, C) out
    select(from(y_BCHW), 1, i)              → from(slice(y, 2, i, i + 1))   (B, W, C) out
    view(from(y_BC1S), [B, S, c1, …, ck])   → permute(reshape(y, [B, c1, …, ck, S]), [0, k+1, 1, …, k])
    view(from(y_BCHW), [B, H·W, C])         → from(reshape(y, [B, C, 1, H·W]))   (pixels as a sequence)
    view(from(y_BC1S), [B, H, W, C])        → from(reshape(y, [B, C, H, W]))     (and back)
    to(moves(y))                            → reshape(block swaps(reshape(y, F)), shape)
                                              (any views/permutes before a conversion, e.g. a
                                              window partition of a channels-last map, done as
                                              one movement of y when its copies move fewer
                                              bytes, each last axis padded to 64 bytes as on
                                              the ANE: a small last axis can make it dearer)
    to(view(x_BSc1…ck, [B, S, C]))          → reshape(permute(x, [0, 2, …, k+1, 1]), [B, C, 1, S])
                                              (a head split or merge of the channel axis)
    view(x, shape(x)), slice(x, d, 0, ≥ size), permute chains → cleanup's rules, shared
"""
from __future__ import annotations

import math

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, normalize_dim, rank, readers, shape
from ane_rewrite.hardware import shape_bytes, touches_last_axis
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from .cleanup import CANONICAL_RULES
from ._heads import MAX_INDEX_ELEMENTS, replay
from ._layouts import AXIS_MAP, RANKS, emit_broadcast_to, emit_from, emit_to, match_from, match_to
from ._movement import block_swaps, emit_block_swaps, factorize, merged



def _conv(rw, x_CF: Node, w_OI: Node, bias) -> Node:
    out_ch, in_ch = w_OI.meta["val"].shape
    w_OI11 = rw.call(aten.reshape.default, w_OI, [out_ch, in_ch, 1, 1])
    return rw.call(aten.conv2d.default, x_CF, w_OI11, bias)


# ── linear ────────────────────────────────────────────────────────────────────────────────

def _match_linear(node: Node) -> MatchResult:
    x, w = node.args[0], node.args[1]
    if rank(x) not in RANKS:
        return MatchResult.fail(f"input has rank {rank(x)}; only ranks 2, 3, 4 have a 4-D channels-first form")
    if rank(w) != 2:
        return MatchResult.fail(f"weight has rank {rank(w)}, not 2")
    return MatchResult.ok(x=x, w=w, b=arg(node, 2, "bias"))


def _shared_weight_product(rw, x_CF: Node, w_OI: Node, bias) -> Node:
    """W·x on the channels-first layout with the 2-D weight itself: (B, I, …) → (B, O, …).
    For a weight another op also reads (an LM head tied to the embedding table): its 4-D view
    would be a second copy of the table in the exported model."""
    b, i, *spatial = shape(x_CF)
    o = shape(w_OI)[0]
    y = rw.call(aten.matmul.default, w_OI, rw.call(aten.reshape.default, x_CF, [b, i, math.prod(spatial)]))
    if bias is not None:
        y = rw.call(aten.add.Tensor, y, rw.call(aten.reshape.default, bias, [o, 1]))
    return rw.call(aten.reshape.default, y, [b, o, *spatial])


def _rewrite_linear(rw, node: Node, m: dict) -> Node:
    x_CF = emit_to(rw, m["x"])
    if len(readers(m["w"])) > 1:
        y = _shared_weight_product(rw, x_CF, m["w"], m["b"])
    else:
        y = _conv(rw, x_CF, m["w"], m["b"])
    return emit_from(rw, y, rank(m["x"]))


linear_to_conv = Rule("linear_to_conv", (aten.linear,), _match_linear, _rewrite_linear,
                      "linear(x, W, b) → from(conv2d(to(x), W.view(O, I, 1, 1), b))")


# ── addmm with a transposed weight (GPT-2's Conv1D) ───────────────────────────────────────

def _addmm_parts(mm: Node) -> MatchResult:
    if not is_op(mm, aten.addmm):
        return MatchResult.skip()
    if mm.kwargs.get("beta", 1) != 1 or mm.kwargs.get("alpha", 1) != 1:
        return MatchResult.fail("addmm with beta or alpha other than 1")
    bias, x2, w_IO = mm.args[:3]
    if rank(bias) != 1:
        return MatchResult.fail(f"addmm bias of rank {rank(bias)}, not a per-output vector")
    return MatchResult.ok(bias=bias, x2=x2, w=w_IO)


def _flattened_source(x2: Node, lead: tuple | None = None) -> Node | None:
    """x2 = view(x, [prod(lead), I]) where x is (*lead, I) — or (*lead, a, b, …) with
    a·b·… = I, as after a head merge folded into the flattening — for 2 or 3 leading axes
    (``lead``: the leading axes the output view restores; by default x's own) → x."""
    if not is_op(x2, *VIEWS):
        return None
    x = x2.args[0]
    x_shape, features = shape(x), shape(x2)[-1]
    if x_shape is None or len(x_shape) < 3:
        return None
    lead = tuple(x_shape[:-1]) if lead is None else tuple(lead)
    if len(lead) not in (2, 3) or tuple(x_shape[:len(lead)]) != lead or math.prod(x_shape[len(lead):]) != features:
        return None
    return x


def _match_addmm_flattened(node: Node) -> MatchResult:
    m = _addmm_parts(node.args[0]) if is_op(node, *VIEWS) else MatchResult.skip()
    if not m.matched:
        return m
    mm = node.args[0]
    out_features = shape(m.bindings["w"])[1]
    if shape(node) is None or shape(node)[-1] != out_features:
        return MatchResult.skip()
    x = _flattened_source(m.bindings["x2"], shape(node)[:-1])
    if x is None:
        if _flattened_source(m.bindings["x2"]) is not None:
            return MatchResult.fail(f"output view {shape(node)} does not restore the input's leading axes")
        return MatchResult.skip()
    if len(mm.users) != 1:
        return MatchResult.fail("the flattened addmm has several users; converting each would duplicate the conv")
    return MatchResult.ok(x=x, **m.bindings)


def _rewrite_addmm(rw, node: Node, m: dict) -> Node:
    src = m.get("x", m["x2"])
    if "x" in m and shape(src)[:-1] != shape(node)[:-1]:  # (B, S, H, d) → (B, S, H·d)
        src = rw.call(aten.reshape.default, src, [*shape(node)[:-1], shape(m["x2"])[-1]])
    w_OI = rw.call(aten.permute.default, m["w"], [1, 0])
    y = _conv(rw, emit_to(rw, src), w_OI, m["bias"])
    return emit_from(rw, y, rank(src))


addmm_flattened_to_conv = Rule(
    "addmm_flattened_to_conv", VIEWS, _match_addmm_flattened, _rewrite_addmm,
    "view(addmm(b, view(x, [N, I]), W_IO), x.shape[:-1] + [O]) → from(conv2d(to(x), W_IO.T.view(O, I, 1, 1), b))")


def _match_addmm_2d(node: Node) -> MatchResult:
    m = _addmm_parts(node)
    if not m.matched:
        return m
    users = list(node.users)
    if len(users) == 1 and _match_addmm_flattened(users[0]).matched:
        return MatchResult.skip()  # addmm_flattened_to_conv owns it
    return MatchResult.ok(**m.bindings)


addmm_to_conv = Rule("addmm_to_conv", (aten.addmm,), _match_addmm_2d, _rewrite_addmm,
                     "addmm(b, x_BC, W_IO) → from(conv2d(x_BC11, W_IO.T.view(O, I, 1, 1), b))")


# ── propagation ───────────────────────────────────────────────────────────────────────────

UNARY = (
    aten.relu, aten.gelu, aten.silu, aten.sigmoid, aten.tanh, aten.hardswish, aten.hardsigmoid,
    aten.hardtanh, aten.leaky_relu, aten.elu, aten.erf, aten.exp, aten.neg, aten.abs, aten.sqrt,
    aten.rsqrt, aten.clone, aten.alias, aten.clamp, aten.pow.Tensor_Scalar, aten.mul.Scalar,
    aten.add.Scalar, aten.sub.Scalar, aten.div.Scalar,
)


def _match_unary(node: Node) -> MatchResult:
    f = match_from(node.args[0]) if isinstance(node.args[0], Node) else None
    if f is None:
        return MatchResult.skip()
    if any(isinstance(a, Node) for a in list(node.args[1:]) + list(node.kwargs.values())):
        return MatchResult.skip()
    return MatchResult.ok(y=f[0], r=f[1])


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


def _match_slice(node: Node) -> MatchResult:
    f = match_from(node.args[0])
    if f is None:
        return MatchResult.skip()
    y, r = f
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

def _match_hoist(node: Node) -> MatchResult:
    t = match_to(node)
    if t is None or not is_op(t[0], aten.cat, aten.slice.Tensor) or len(readers(t[0])) != 1:
        return MatchResult.skip()
    x, r = t
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


def _match_select(node: Node) -> MatchResult:
    f = match_from(node.args[0])
    if f is None:
        return MatchResult.skip()
    y, r = f
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


def _match_split_view(node: Node) -> MatchResult:
    f = match_from(node.args[0])
    if f is None:
        return MatchResult.skip()
    factors = _split_factors(shape(node.args[0]), shape(node))
    if factors is None:
        return MatchResult.skip()
    return MatchResult.ok(y=f[0], r=f[1], factors=factors)


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


def _match_merge_view(node: Node) -> MatchResult:
    t = match_to(node)
    if t is None:
        return MatchResult.skip()
    v, r = t
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

def _match_spatial_view(node: Node) -> MatchResult:
    f = match_from(node.args[0])
    if f is None:
        return MatchResult.skip()
    y, r = f
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


def _match_movement(node: Node) -> MatchResult:
    found = _movement_path(node)
    if found is None:
        return MatchResult.skip()
    y, path, dying, cost = found
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

# Shared with passes that emit ``from`` conversions of their own (layer_norm). Cleanup's
# canonical rules run in the same fixpoint: ``to(from(y))`` cancels through them (permute pairs
# fold away, squeeze/unsqueeze pairs cancel), no-op views cannot hide a ``from`` from its
# consumer, and a head split right after a conversion costs one transpose.
PROPAGATION_RULES = (sink_unary, sink_binary, sink_slice, sink_cat, hoist_cat_slice, sink_select,
                     sink_split_view, sink_spatial_view, hoist_merge_view, movement_in_layout,
                     *CANONICAL_RULES)

layout = Pass(
    "layout",
    [linear_to_conv, addmm_flattened_to_conv, addmm_to_conv, *PROPAGATION_RULES],
    __doc__,
)
