"""Which channels of a channels-first tensor each attention head reads.

A head split is any chain of pure data-movement ops (view, reshape, permute, transpose, select,
slice, split, unbind, expand, squeeze, unsqueeze, clone) from a 4-D channels-first y_BC1S to a
(B, H, S, d) tensor. Rather than match every spelling of that chain, ``head_channels`` runs the
chain on an index tensor (``arange`` shaped like y) and reads the answer off the indices:
q[b, h, s, c] must be y[b, base[h] + c, 0, s] for per-head channel offsets ``base`` (or
y[s, base[h] + c, 0, b] for a model that runs sequence-first, as nn.MultiheadAttention does
inside). Repeated offsets are grouped-query heads sharing a key/value head. The source may also
be a (B, C, H, W) feature map whose positions, row-major, are the sequence (attention over the
pixels of a window after a 1×1 convolution, as in MaxViT): y[b, base[h] + c, s // W, s % W].
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, aten, is_op, shape

from ._per_head import batch_first

MOVEMENT = (*VIEWS, aten.permute, aten.transpose, aten.select,
            aten.slice, aten.squeeze, aten.unsqueeze, aten.expand, aten.clone, aten.alias,
            aten.split, aten.split_with_sizes, aten.unbind, aten.chunk, aten.contiguous)
MAX_INDEX_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class Heads:
    source: Node            # y_BC1S, or y_SC1B when ``swapped``
    bases: tuple[int, ...]  # first channel of each head
    dim: int                # channels per head
    swapped: bool = False   # y's first and last axes are x's sequence and batch (seq-first models)
    spatial: bool = False   # y is (B, C, H, W) with H > 1: the sequence is its H·W positions
    broadcast: bool = False  # y has batch 1 and every batch entry of x reads it (GCViT's global query)


def _chain(node: Node) -> tuple[Node, list[Node]]:
    chain = []
    while isinstance(node, Node):
        if node.op == "call_function" and node.target is operator.getitem and is_op(node.args[0], *MOVEMENT):
            chain += [node, node.args[0]]
            node = node.args[0].args[0]
        elif is_op(node, *MOVEMENT):
            chain.append(node)
            node = node.args[0]
        else:
            break
    return node, chain


def replay(source: Node, chain: list[Node], index: torch.Tensor) -> torch.Tensor:
    values = {source: index}

    def sub(a):
        return values[a] if isinstance(a, Node) else a

    for n in reversed(chain):
        args = torch.fx.node.map_arg(n.args, sub)
        kwargs = torch.fx.node.map_arg(n.kwargs, sub)
        values[n] = n.target(*args, **kwargs)
    return values[chain[0]] if chain else index


def movement_chain(x: Node) -> tuple[Node, list[Node]]:
    """(the first node above x's chain of data-movement ops, the chain from x up)."""
    return _chain(x)


def source_of(x: Node) -> Node:
    """The first node above x's chain of data-movement ops."""
    return _chain(x)[0]


def head_channels(x: Node, tail: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  broadcast: bool = False) -> Heads | None:
    """x (B, H, S, d) as heads of the channel axis of a channels-first (B, C, 1, S) (or
    (B, C, H, W) with S = H·W), or None.

    ``tail`` is applied after x's own chain, to read a value that does not exist as a node yet:
    ``lambda t: t.transpose(-1, -2)`` for a key that matmul reads as (B, H, d, S), or a reshape
    of a (B·H, S, d) tensor into (B, H, S, d). ``broadcast``: y may also have batch 1 and be read
    by every batch entry of x (a query shared by all windows, expanded over them): Heads with
    ``broadcast`` set, for a reader that broadcasts it (a matmul) rather than repeat it."""
    source, chain = _chain(x)
    y_shape = shape(source)
    if y_shape is None or len(y_shape) != 4:
        return None
    first, c, rows, cols = y_shape
    last = rows * cols
    if first * c * last > MAX_INDEX_ELEMENTS:
        return None
    try:
        idx = replay(source, chain, torch.arange(first * c * last).view(y_shape))
        if tail is not None:
            idx = tail(idx)
    except (RuntimeError, TypeError, KeyError, IndexError):
        return None
    if idx.dim() != 4:
        return None
    heads, d = idx.shape[1], idx.shape[3]
    outer, chan, inner = idx // (c * last), (idx // last) % c, idx % last
    batch_axis = torch.arange(idx.shape[0]).view(-1, 1, 1, 1).expand_as(idx)
    seq_axis = torch.arange(idx.shape[2]).view(1, 1, -1, 1).expand_as(idx)
    shared = broadcast and first == 1 and idx.shape[0] > 1 and not bool(outer.any())
    if (shared or torch.equal(outer, batch_axis)) and torch.equal(inner, seq_axis):
        swapped = False
    elif torch.equal(outer, seq_axis) and torch.equal(inner, batch_axis):
        swapped = True
    else:
        return None
    if swapped and rows != 1:
        return None
    bases = chan[0, :, 0, 0]
    if not torch.equal(chan, (bases.view(1, heads, 1, 1) + torch.arange(d).view(1, 1, 1, d)).expand_as(idx)):
        return None
    return Heads(source, tuple(int(v) for v in bases), d, swapped, rows != 1, shared)


def head_step(h: Heads) -> int | None:
    """The channels from one head's first channel to the next one's when the heads lie at
    equal steps (a fused projection may interleave them: LeViT's q, k, v of one head, then
    the next head's), at least a head apart; None otherwise."""
    if len(h.bases) == 1:
        return h.dim
    step = h.bases[1] - h.bases[0]
    if step < h.dim or h.bases != tuple(h.bases[0] + i * step for i in range(len(h.bases))):
        return None
    return step


def unread_as_they_lie(h: Heads) -> str | None:
    """None when the heads lie at equal steps of the channel axis of a batch-first source, so a
    reshape and a slice read them as they lie (``batched_heads``); else why not."""
    if h.swapped:
        return "the heads run sequence-first (S, C, 1, B): reading them needs a transpose"
    stride = head_step(h)
    if stride is None or h.bases[0] - h.bases[0] % stride + stride * len(h.bases) > shape(h.source)[1]:
        return f"the heads' channel offsets {h.bases[:4]}… are not at equal steps of the channel axis"
    return None


def heads_as_they_lie(rw, h: Heads) -> Node:
    """x_BHdS: the heads' channels of their (B, C, 1, S) source, split into (H, step) and cut
    to each head's d channels (a slice of axis 2: no copy of the last axis)."""
    y = batch_first(rw, h)
    b, c, _, s = shape(y)
    stride, heads = head_step(h), len(h.bases)
    offset = h.bases[0] % stride
    first = h.bases[0] - offset
    if (first, stride * heads) != (0, c):
        y = rw.call(aten.slice.Tensor, y, 1, first, first + stride * heads)
    y = rw.call(aten.reshape.default, y, [b, heads, stride, s])
    if (offset, h.dim) != (0, stride):
        y = rw.call(aten.slice.Tensor, y, 2, offset, offset + h.dim)
    return y
