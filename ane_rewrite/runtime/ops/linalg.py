"""Convolutions and products: conv, conv_transpose, matmul, linear, einsum, and iOS 18's
scaled_dot_product_attention.

``conv(x, weight, bias, strides, pad_type, pad, dilations, groups)`` on (N, C, *D) with weight
(C_out, C_in / groups, *K); ``pad_type`` "valid" (none), "custom" (``pad`` = begin, end per
spatial axis), "same" (the total ``max((⌈D/s⌉ − 1)·s + (K − 1)·d + 1 − D, 0)`` split with the
smaller half first) or "same_lower" (the larger half first). ``conv_transpose`` with weight
(C_in, C_out / groups, *K) crops its full result by ``pad`` ("custom"), to D·s ("same"), and
otherwise pads or crops at the end to the declared output shape.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import ints, op, scalar

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _spatial(a, name: str, n: int, default: int) -> list[int]:
    value = a.get(name)
    return [default] * n if value is None else ints(value)


def _same_pad(size, kernel, stride, dilation, lower: bool) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def _pads(a, x, kernel, strides, dilations) -> list[tuple[int, int]]:
    n = x.dim() - 2
    pad_type = a.get("pad_type") or "valid"
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = _spatial(a, "pad", 2 * n, 0)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        return [_same_pad(x.shape[2 + i], kernel[i], strides[i], dilations[i], pad_type == "same_lower")
                for i in range(n)]
    raise ValueError(f"pad_type {pad_type!r} is not one MIL defines")


def torch_pad(pads: list[tuple[int, int]]) -> list[int]:
    """(begin, end) per axis, first axis first → torch's F.pad order (last axis first)."""
    return [v for begin, end in reversed(pads) for v in (begin, end)]


@op("conv")
def conv(a, out):
    x, w = a["x"], a["weight"]
    n = x.dim() - 2
    strides, dilations = _spatial(a, "strides", n, 1), _spatial(a, "dilations", n, 1)
    pads = _pads(a, x, list(w.shape[2:]), strides, dilations)
    if any(p for pair in pads for p in pair):
        x = F.pad(x, torch_pad(pads))
    return _CONV[n](x, w.to(x.dtype), a.get("bias"), strides, 0, dilations, int(scalar(a.get("groups"), 1)))


@op("conv_transpose")
def conv_transpose(a, out):
    x, w = a["x"], a["weight"]
    n = x.dim() - 2
    strides, dilations = _spatial(a, "strides", n, 1), _spatial(a, "dilations", n, 1)
    y = _CONV_T[n](x, w.to(x.dtype), a.get("bias"), strides, 0, 0, int(scalar(a.get("groups"), 1)), dilations)
    target = out[0].shape[2:]
    pad_type = a.get("pad_type") or "valid"
    for i in range(n):
        full, want = y.shape[2 + i], target[i]
        if pad_type == "custom":
            p = _spatial(a, "pad", 2 * n, 0)
            begin = p[2 * i]
        elif pad_type == "same":
            begin = (full - want) // 2
        else:
            begin = 0
        if want > full - begin:
            y = F.pad(y, [0, 0] * (n - 1 - i) + [0, want - (full - begin)])
        y = y.narrow(2 + i, begin, want)
    return y


def _last_two_t(x):
    return x.transpose(-1, -2) if x.dim() >= 2 else x


@op("matmul")
def matmul(a, out):
    x, y = a["x"], a["y"]
    if scalar(a.get("transpose_x"), False):
        x = _last_two_t(x)
    if scalar(a.get("transpose_y"), False):
        y = _last_two_t(y)
    return torch.matmul(x, y.to(x.dtype))


@op("linear")
def linear(a, out):
    x = a["x"]
    return F.linear(x, a["weight"].to(x.dtype), a.get("bias"))


@op("einsum")
def einsum(a, out):
    values = a["values"]
    return torch.einsum(a["equation"], *values)


@op("scaled_dot_product_attention")
def sdpa(a, out):
    q, k, v, mask = a["query"], a["key"], a["value"], a.get("attn_mask")
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
