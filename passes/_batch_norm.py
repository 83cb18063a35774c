"""A BatchNorm over flattened tokens, as the per-channel affine it is in eval mode.

    bn(view(t, [N, C]))[0]   with t (…, C), N = prod(t.shape[:-1])   (LeViT's Linear + BatchNorm1d)
        → view(t · s + (b − mean · s), [N, C]),   s = w · rsqrt(var + eps)   (computed in the graph
                                                                             from the BN's own tensors)

Why: the (N, C) flattening merges batch and sequence, a form the channels-first layout has no
image of; as an elementwise affine on t the layout spreads through it (``sink_binary``), and
the head split after it reads a (B, C, 1, S) projection again (docs/ane.md#principles, 1).
"""
from __future__ import annotations

import math
import operator

from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, aten, is_op, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule


def _match(node: Node) -> MatchResult:
    if not (node.op == "call_function" and node.target is operator.getitem and node.args[1] == 0):
        return MatchResult.skip()
    bn = node.args[0]
    if not is_op(bn, aten._native_batch_norm_legit_no_training):
        return MatchResult.skip()
    x, w, b, mean, var = bn.args[:5]
    eps = bn.args[6] if len(bn.args) > 6 else bn.kwargs.get("eps", 1e-5)
    if len(shape(x)) != 2 or not is_op(x, *VIEWS):
        return MatchResult.skip()
    t = x.args[0]
    n, c = shape(x)
    if shape(t) is None or len(shape(t)) < 3 or shape(t)[-1] != c or math.prod(shape(t)[:-1]) != n:
        return MatchResult.skip()
    return MatchResult.ok(t=t, w=w, b=b, mean=mean, var=var, eps=float(eps))


def _rewrite(rw, node: Node, m: dict) -> Node:
    inv = rw.call(aten.rsqrt.default, rw.call(aten.add.Tensor, m["var"], m["eps"]))
    scale = inv if m["w"] is None else rw.call(aten.mul.Tensor, m["w"], inv)
    shift = rw.call(aten.neg.default, rw.call(aten.mul.Tensor, m["mean"], scale))
    if m["b"] is not None:
        shift = rw.call(aten.add.Tensor, m["b"], shift)
    y = rw.call(aten.add.Tensor, rw.call(aten.mul.Tensor, m["t"], scale), shift)
    return rw.call(aten.reshape.default, y, list(shape(node)))


token_batch_norm = Rule("token_batch_norm", (operator.getitem,), _match, _rewrite,
                        "bn(view(t, [N, C]))[0] → view(t · s + (b − mean · s), [N, C]) (eval mode)")
