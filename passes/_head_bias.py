"""A bias added to attention heads after they were split off their projection, moved onto the
projection's channels, so the heads are head splits again.

    q = split_heads(y_BC1S) + t        t: (1, H, 1, d) or (H, 1, d), no graph input reaches it
      → q = split_heads(y_BC1S + t_C)  t_C: (1, C, 1, 1), head h's d values at its channels,
                                          0 on the channels no head of q reads

DeBERTa adds its query and value biases this way (its fused projection has none). The bias
stays computed from its parameter in the graph (``load_state_dict`` keeps working); the
export folds it into a constant. Only adds whose result reaches an attention product (a
matmul, possibly through scalar factors) are moved.
"""
from __future__ import annotations

import math

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, is_op, is_static, readers, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._heads import head_channels, movement_chain

PRODUCTS = (aten.matmul, aten.bmm, aten.scaled_dot_product_attention)
FACTORS = (aten.mul.Tensor, aten.div.Tensor)


def _reaches_a_product(node: Node, depth: int = 3) -> bool:
    for r in readers(node):
        if is_op(r, *PRODUCTS):
            return True
        if depth and is_op(r, *FACTORS, aten.transpose, aten.permute) and _reaches_a_product(r, depth - 1):
            return True
    return False


def _match(node: Node) -> MatchResult:
    if len(node.args) != 2 or node.kwargs or not all(isinstance(a, Node) for a in node.args):
        return MatchResult.skip()
    for i in (0, 1):
        x, t = node.args[i], node.args[1 - i]
        x_shape, t_shape = shape(x), shape(t)
        if x_shape is None or t_shape is None or len(x_shape) != 4 or not is_static(t):
            continue
        padded = (1,) * (4 - len(t_shape)) + tuple(t_shape)
        b, h, s, d = x_shape
        if padded != (1, h, 1, d) or h == 1:
            continue
        heads = head_channels(x)
        if heads is None or heads.swapped or heads.spatial:
            continue
        bases = sorted(heads.bases)
        if any(b2 - b1 < d for b1, b2 in zip(bases, bases[1:])):
            continue  # heads sharing channels (grouped keys): one bias per channel is not defined
        if not _reaches_a_product(node):
            return MatchResult.skip()
        return MatchResult.ok(x=x, t=t, heads=heads)
    return MatchResult.skip()


def _rewrite(rw, node: Node, m: dict) -> Node:
    heads, t = m["heads"], m["t"]
    y = heads.source
    channels, d = shape(y)[1], heads.dim
    t_Hd = rw.call(aten.reshape.default, t, [len(heads.bases), d])
    parts, at = [], 0
    for base, h in sorted((base, h) for h, base in enumerate(heads.bases)):
        if base > at:
            parts.append(rw.constant("head_bias_fill", torch.zeros(base - at, dtype=t.meta["val"].dtype)))
        parts.append(rw.call(aten.select.int, t_Hd, 0, h))
        at = base + d
    if at < channels:
        parts.append(rw.constant("head_bias_fill", torch.zeros(channels - at, dtype=t.meta["val"].dtype)))
    t_C = rw.call(aten.reshape.default, rw.call(aten.cat.default, parts, 0), [1, channels, 1, 1])
    biased = rw.call(aten.add.Tensor, y, t_C)
    source, chain = movement_chain(m["x"])
    values = {source: biased}
    for n in reversed(chain):  # x's own movement chain, replayed on the biased source
        args = torch.fx.node.map_arg(n.args, lambda a: values.get(a, a))
        values[n] = rw.call(n.target, *args, **n.kwargs)
    assert math.prod(shape(values[m["x"]])) == math.prod(shape(m["x"]))
    return values[m["x"]]


head_bias_to_channels = Rule(
    "head_bias_to_channels", (aten.add.Tensor,), _match, _rewrite,
    "split_heads(y) + t(1, H, 1, d) → split_heads(y + t on its heads' channels), for an attention operand")
