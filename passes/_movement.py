"""Pure data movement as reshape → permute → reshape, found from where the elements go.

A chain of views and permutes moves elements without computing; given, for every element of
the result, the flat index it comes from (``index``: replaying the chain on an ``arange``),
``factorize`` finds source factors F and a permutation p with

    index == arange(prod F).view(F).permute(p).reshape(index.shape)

by peeling the result's flattened order into runs of constant stride, innermost first. The
factors must tile the source (strides 1, f₀, f₀·f₁, …); anything else (a gather, a broadcast,
an overlap) has no such form and gives None. The answer is checked by rebuilding the index.

``block_swaps`` turns a permutation of any rank into steps of rank ≤ 4 (see passes/windows.py).
"""
from __future__ import annotations

import math

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import aten


def _runs(v: torch.Tensor) -> list[tuple[int, int]] | None:
    """The result's flattened order → [(size, stride)] of its factors, innermost first."""
    factors = []
    starts = v
    while starts.numel() > 1:
        n, stride = starts.numel(), int(starts[1] - starts[0])
        longest = 1
        while longest < n and int(starts[longest] - starts[longest - 1]) == stride:
            longest += 1
        for size in range(longest, 1, -1):  # the longest run that tiles every block
            if n % size:
                continue
            blocks = starts.view(-1, size)
            if torch.equal(blocks - blocks[:, :1], (torch.arange(size) * stride).expand_as(blocks)):
                break
        else:
            return None
        factors.append((size, stride))
        starts = blocks[:, 0]
    return factors


def factorize(index: torch.Tensor) -> tuple[list[int], list[int]] | None:
    """index (any shape, a permutation of range(numel)) → (F, p), or None."""
    v = index.reshape(-1)
    if v.numel() == 0 or not torch.equal(torch.sort(v).values, torch.arange(v.numel())):
        return None
    runs = _runs(v)
    if runs is None:
        return None
    by_stride = sorted(range(len(runs)), key=lambda i: -runs[i][1])   # source order: outermost first
    sizes = [runs[i][0] for i in by_stride]
    expected = 1
    for i in reversed(by_stride):
        if runs[i][1] != expected:
            return None
        expected *= runs[i][0]
    # the result's factors, outermost first, as positions in the source order
    perm = [by_stride.index(i) for i in reversed(range(len(runs)))]
    rebuilt = torch.arange(v.numel()).view(sizes).permute(perm).reshape(index.shape)
    return (sizes, perm) if torch.equal(rebuilt, index) else None


def merged(sizes: list[int], perm: list[int]) -> tuple[list[int], list[int]]:
    """The same movement with source factors that stay adjacent and in order merged."""
    groups: list[list[int]] = []
    for axis in perm:
        if groups and groups[-1][-1] + 1 == axis:
            groups[-1].append(axis)
        else:
            groups.append([axis])
    order = sorted(range(len(groups)), key=lambda g: groups[g][0])
    new_sizes = [math.prod(sizes[a] for a in groups[g]) for g in order]
    new_perm = [order.index(g) for g in range(len(groups))]
    return new_sizes, new_perm


def block_swaps(sizes: list[int], perm: list[int]) -> list[tuple[list[int], list[int]]]:
    """The steps (reshape dims, permutation) that apply ``perm`` to a tensor of ``sizes``,
    each of rank ≤ 4, in order; an empty list for the identity."""
    order = list(range(len(sizes)))
    steps = []
    for i, axis in enumerate(perm):
        j = order.index(axis)
        if j == i:
            continue
        pre, moved, passed, post = order[:i], order[j:j + 1], order[i:j], order[j + 1:]
        dims = [math.prod(sizes[a] for a in group) for group in (pre, passed, moved, post)]
        step_perm = [0, 2, 1, 3]
        if dims[3] == 1:
            dims, step_perm = dims[:3], [0, 2, 1]
        if dims[0] == 1:
            dims, step_perm = dims[1:], [p - 1 for p in step_perm[1:]]
        steps.append((dims, step_perm))
        order = pre + moved + passed + post
    return steps


def emit_block_swaps(rw, x: Node, steps: list[tuple[list[int], list[int]]], out_shape) -> Node:
    """``block_swaps``' steps applied to x in the graph (reshape, permute each), then the
    reshape to ``out_shape``."""
    for dims, perm in steps:
        x = rw.call(aten.permute.default, rw.call(aten.reshape.default, x, dims), perm)
    return rw.call(aten.reshape.default, x, list(out_shape))
