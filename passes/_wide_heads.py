"""A projection wider than one ANE conv (an LM head of a 32k–256k vocabulary) in pieces.

    linear(x, W_OI, b), O > MAX_DIM ≥ I
        → cat([conv2d(x_BC1S, W[o₀:o₁].view(o₁ − o₀, I, 1, 1), b[o₀:o₁]) for each piece], dim=1)

n = ⌈O / MAX_DIM⌉ pieces of ⌈O / n⌉ output channels (the last one shorter), each a conv that
fits the ANE (docs/ane.md#placement-rules: any dim > 16384 leaves it), the logits concatenated
on the channel axis in order, so the result is the same tensor. A weight shared with another
op (an LM head tied to the embedding table) is sliced as it is, in matmuls. Hand ports split
the head into 2, 8 or 16 pieces the same way (docs/ane.md, modern decoders).
"""
from __future__ import annotations

import math

from torch.fx import Node

from ane_rewrite.hardware import MAX_DIM
from ane_rewrite.rewrite.graph import aten, shape


def pieces(out_channels: int) -> list[tuple[int, int]]:
    """[o₀, o₁) of each piece: as few as fit MAX_DIM, of equal size but the last."""
    n = math.ceil(out_channels / MAX_DIM)
    size = math.ceil(out_channels / n)
    return [(start, min(start + size, out_channels)) for start in range(0, out_channels, size)]


def splits(w_shape) -> bool:
    """A weight only its output dimension makes too wide: split into pieces."""
    out_channels, in_channels = w_shape
    return out_channels > MAX_DIM >= in_channels


def split_product(rw, x_CF: Node, w_OI: Node, bias, product) -> Node:
    """cat over the pieces of ``product(rw, x_CF, w_piece, bias_piece)``, on the channel axis."""
    outs = []
    for start, end in pieces(shape(w_OI)[0]):
        w_piece = rw.call(aten.slice.Tensor, w_OI, 0, start, end)
        b_piece = rw.call(aten.slice.Tensor, bias, 0, start, end) if bias is not None else None
        outs.append(product(rw, x_CF, w_piece, b_piece))
    return rw.call(aten.cat.default, outs, 1)
