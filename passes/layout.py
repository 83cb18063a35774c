"""Layout: linears become 1×1 convs on a channels-first 4-D layout, and the layout spreads.

Glossary: B batch, S sequence, C channels, H/W spatial, O/I out/in channels.

Conversions (weights are viewed in the graph; parameters keep their names and shapes; a weight shared by
several linears — ALBERT's layers — is one conv weight for all of them; a weight another kind
of op also reads — an LM head tied to the embedding table — is used as it is, in a matmul on
the channels-first layout, so the export holds one copy of it):

    linear(x_BSC, W, b)                     → from(conv2d(x_BC1S, W.view(O, I, 1, 1), b))
    linear(x_BC, W, b)                      → from(conv2d(x_BC11, W.view(O, I, 1, 1), b))
    linear(x_BHWC, W, b)                    → from(conv2d(x_BCHW, W.view(O, I, 1, 1), b))
    linear(x_BHWC, W, b), W < 32 (narrow rows: the windows of a partition, 8×8, 7×7)
                                            → view(from(conv2d(x_BC1S, …)), [B, H, W, O]), S = H·W
        (its (B, C, H, W) form would pad every row of W to 32 elements; the pixels as tokens
        do not, and ``window_groups`` reads the (N, C, 1, S) windows)
    view(addmm(b, view(x_BSC, [B·S, I]), W_IO), [B, S, O])
                                            → from(conv2d(x_BC1S, W_IO.T.view(O, I, 1, 1), b))
        (x may also be (B, S, h, d) with h·d = I: a head merge folded into the flattening)
    addmm(b, x_BC, W_IO)                    → from(conv2d(x_BC11, W_IO.T.view(O, I, 1, 1), b))
    matmul(x_BSC, permute(W, [1, 0]))       → from(conv2d(x_BC1S, W.view(O, I, 1, 1)))   (x @ W.T)
    linear(x_BSC, W, b), O > 16384          → from(cat([conv2d(x_BC1S, W[piece].view(…), b[piece]) …], 1))
        (an LM head wider than one ANE conv, in pieces: ``_wide_heads``)

A linear whose input no graph input reaches (Swin v2's continuous position-bias MLP over its
coordinates table) is a constant computation: it is left as a linear, which coremltools folds
into a constant (it cannot fold a conv), with the gather of its output.

where x_BC1S = to(x_BSC) and ``from`` is its inverse (see ``passes/_layouts.py``). A BatchNorm
over the flattened tokens of a projection (LeViT) becomes its eval-mode affine (``_batch_norm``).

Then the layout spreads (``_propagation``, to a fixpoint, so consecutive linears share one
layout region): elementwise ops, residual adds, slices, concats, token selects, head split and
merge views and pixels-as-sequence views run on the channels-first tensor, and a chain of
views/permutes before a conversion becomes one movement when its copies move fewer bytes
(``_layout_cost``). ``to(from(y))`` then cancels through cleanup's canonical rules.

Why: the ANE is 4-D and channels-first; a projection on channels-last (B, S, C) tokens runs at
a fraction of its rate, and every transpose that touches the last axis is a memory copy
(docs/ane.md#principles, 1 and 3).
"""
from __future__ import annotations

import math

from torch.fx import Node

from ane_rewrite.hardware import ALIGNED_LAST_AXIS, MAX_DIM, shape_bytes
from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, is_static, rank, readers, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._batch_norm import token_batch_norm
from ._wide_heads import split_product, splits
from ._heads import movement_chain
from ._layouts import RANKS, emit_from, emit_to, match_from
from ._regions import KEEP
from ._propagation import PROPAGATION_RULES


def _conv(rw, x_CF: Node, w_OI: Node, bias) -> Node:
    out_ch, in_ch = w_OI.meta["val"].shape
    w_OI11 = rw.call(aten.reshape.default, w_OI, [out_ch, in_ch, 1, 1])
    return rw.call(aten.conv2d.default, x_CF, w_OI11, bias)


# ── linear ────────────────────────────────────────────────────────────────────────────────

def _too_wide(w_shape, split: bool = False) -> str | None:
    """A projection with a dimension over the ANE's limit runs off the ANE as a conv or as a
    linear alike; ``split``: a linear too wide in its output only is split (``_wide_heads``)."""
    if max(w_shape) > MAX_DIM and not (split and splits(w_shape)):
        return (f"weight {tuple(w_shape)} has a dimension > {MAX_DIM}: no single ANE conv holds it "
                "(docs/ane.md#placement-rules); left as it is")
    return None


STATIC_REASON = ("its input is computed from parameters and constants only (a position-bias MLP over a "
                 "coordinates table): a constant sub-graph, left as a linear for the export's constant folding")


def _match_linear(node: Node) -> MatchResult:
    x, w = node.args[0], node.args[1]
    if node.meta.get(KEEP):  # the projection of an attention left as it is (``_regions``)
        return MatchResult.fail(node.meta[KEEP])
    if is_static(x):
        return MatchResult.fail(STATIC_REASON)
    if rank(x) not in RANKS:
        return MatchResult.fail(f"input has rank {rank(x)}; only ranks 2, 3, 4 have a 4-D channels-first form")
    if rank(w) != 2:
        return MatchResult.fail(f"weight has rank {rank(w)}, not 2")
    if reason := _too_wide(shape(w), split=True):
        return MatchResult.fail(reason)
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


def _projection_only(w: Node) -> bool:
    """Every reader of w uses it as a projection weight: a linear, x @ Wᵀ, or the 4-D view of
    it a converted linear reads (one weight shared by the layers of ALBERT is still one conv weight,
    and the equal views of it become one node in cleanup)."""
    def projection(r: Node) -> bool:
        if is_op(r, aten.linear):
            return r.args[1] is w and r.args[0] is not w
        if is_op(r, aten.permute, aten.t):  # x @ Wᵀ (Falcon's spelling of a linear)
            return all(is_op(u, aten.matmul) and u.args[1] is r for u in readers(r))
        return is_op(r, aten.reshape) and list(r.args[1]) == [*shape(w), 1, 1]
    return all(projection(r) for r in readers(w))


def narrow_rows(x: Node) -> bool:
    """x is the windows of a partition (B·nW, h, w, C) — a chain of data movement with a permute
    in it that is not a plain layout conversion — whose rows are narrower than one aligned last
    axis (8×8, 4×4, 7×7): its (B, C, h, w) form pads each row of w to ``ALIGNED_LAST_AXIS``
    elements, its (B, C, 1, h·w) form does not (or less). A map that a spatial op reads as
    (B, C, H, W) (ConvNeXt's 7×7 stage: a depthwise conv before its linears) is not a partition,
    and keeps that form: the token form would add a copy on the way in and out."""
    s = shape(x)
    if len(s) != 4 or s[2] >= ALIGNED_LAST_AXIS or shape_bytes((s[0], s[3], 1, s[1] * s[2]), padded=True) \
            >= shape_bytes((s[0], s[3], s[1], s[2]), padded=True):
        return False
    _, chain = movement_chain(x)
    return match_from(x) is None and any(is_op(n, aten.permute) for n in chain)


def flattened_tokens(x: Node) -> Node | None:
    """x = (B·S, C), the flattened (B, S, C) form of channels-first tokens (a mixture of experts'
    router reads its tokens so): that (B, S, C) node, so the linear runs on the tokens' (B, C, 1,
    S) form and only its O outputs are turned back to rows — not the C inputs; else None."""
    if rank(x) != 2 or not is_op(x, *VIEWS) or rank(x.args[0]) != 3:
        return None
    t = x.args[0]
    found = match_from(t)
    return t if found is not None and found[1] == 3 and shape(t)[-1] == shape(x)[-1] else None


def _rewrite_linear(rw, node: Node, m: dict) -> Node:
    x = m["x"]
    s = shape(x)
    if narrow_rows(x):  # its pixels as tokens: (B, H·W, C), a view that leaves the channels last
        x = rw.call(aten.reshape.default, x, [s[0], s[1] * s[2], s[3]])
    elif (tokens := flattened_tokens(x)) is not None:  # (B·S, C) of channels-first tokens: on them
        x = tokens
    x_CF = emit_to(rw, x)
    product = _conv if _projection_only(m["w"]) else _shared_weight_product
    if splits(shape(m["w"])):
        y = split_product(rw, x_CF, m["w"], m["b"], product)
    else:
        y = product(rw, x_CF, m["w"], m["b"])
    out = emit_from(rw, y, rank(x))
    return rw.call(aten.reshape.default, out, list(shape(node))) if x is not m["x"] else out


linear_to_conv = Rule("linear_to_conv", (aten.linear,), _match_linear, _rewrite_linear,
                      "linear(x, W, b) → from(conv2d(to(x), W.view(O, I, 1, 1), b))")


def _match_weight_product(node: Node) -> MatchResult:
    """x @ Wᵀ with W a rank-2 parameter (Falcon's ``input @ self.weight.T``): a linear."""
    x, wt = node.args[:2]
    if not (is_op(wt, aten.permute, aten.t) and isinstance(wt.args[0], Node) and wt.args[0].op == "get_attr"):
        return MatchResult.skip()
    if rank(wt.args[0]) != 2 or (is_op(wt, aten.permute) and list(wt.args[1]) != [1, 0]):
        return MatchResult.skip()
    if rank(x) not in RANKS:
        return MatchResult.fail(f"input has rank {rank(x)}; only ranks 2, 3, 4 have a 4-D channels-first form")
    if reason := _too_wide(shape(wt.args[0])):
        return MatchResult.fail(reason)
    return MatchResult.ok(x=x, w=wt.args[0], b=None)


weight_product_to_conv = Rule("weight_product_to_conv", (aten.matmul,), _match_weight_product, _rewrite_linear,
                              "matmul(x, Wᵀ) → from(conv2d(to(x), W.view(O, I, 1, 1)))")


# ── addmm with a transposed weight (GPT-2's Conv1D) ───────────────────────────────────────

def _addmm_parts(mm: Node) -> MatchResult:
    if not is_op(mm, aten.addmm):
        return MatchResult.skip()
    if mm.kwargs.get("beta", 1) != 1 or mm.kwargs.get("alpha", 1) != 1:
        return MatchResult.fail("addmm with beta or alpha other than 1")
    bias, x2, w_IO = mm.args[:3]
    if rank(bias) != 1:
        return MatchResult.fail(f"addmm bias of rank {rank(bias)}, not a per-output vector")
    if rank(w_IO) == 2 and (reason := _too_wide(shape(w_IO))):
        return MatchResult.fail(reason)
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


layout = Pass(
    "layout",
    [linear_to_conv, weight_product_to_conv, addmm_flattened_to_conv, addmm_to_conv, token_batch_norm,
     *PROPAGATION_RULES],
    __doc__,
)
