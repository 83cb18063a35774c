"""Pooling: avg_pool, max_pool, l2_pool over the spatial axes of (N, C, *D).

``kernel_sizes``, ``strides``, ``pad_type`` (valid / custom / same / same_lower, as conv),
``pad``, ``ceil_mode``; ``avg_pool``'s ``exclude_padding_from_average`` divides by the number of
input elements under the window instead of the window's size. Max pooling pads with −∞.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import ints, op, scalar
from .linalg import _same_pad, torch_pad

_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _window(a, x):
    n = x.dim() - 2
    kernel = ints(a["kernel_sizes"])
    strides = ints(a["strides"]) if a.get("strides") is not None else [1] * n
    pad_type = a.get("pad_type") or "valid"
    if pad_type == "custom":
        p = ints(a["pad"])
        pads = [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    elif pad_type in ("same", "same_lower"):
        pads = [_same_pad(x.shape[2 + i], kernel[i], strides[i], 1, pad_type == "same_lower") for i in range(n)]
    else:
        pads = [(0, 0)] * n
    return n, kernel, strides, torch_pad(pads), bool(scalar(a.get("ceil_mode"), False))


def _sums(x, n, kernel, strides, pads, ceil):
    padded = F.pad(x, pads) if any(pads) else x
    return _AVG[n](padded, kernel, strides, 0, ceil, True, 1) if n > 1 else \
        _AVG[1](padded, kernel, strides, 0, ceil, True) * kernel[0]


@op("avg_pool")
def avg_pool(a, out):
    x = a["x"]
    n, kernel, strides, pads, ceil = _window(a, x)
    sums = _sums(x, n, kernel, strides, pads, ceil)
    if scalar(a.get("exclude_padding_from_average"), False):
        count = _sums(torch.ones_like(x[:1, :1]), n, kernel, strides, pads, ceil)
    else:
        count = _sums(F.pad(torch.ones_like(x[:1, :1]), pads, value=1.0) if any(pads) else torch.ones_like(x[:1, :1]),
                      n, kernel, strides, [0] * len(pads), ceil)
    return sums / count


@op("max_pool")
def max_pool(a, out):
    x = a["x"]
    n, kernel, strides, pads, ceil = _window(a, x)
    padded = F.pad(x, pads, value=-torch.inf) if any(pads) else x
    return _MAX[n](padded, kernel, strides, 0, 1, ceil)


@op("l2_pool")
def l2_pool(a, out):
    x = a["x"]
    n, kernel, strides, pads, ceil = _window(a, x)
    return _sums(x.square(), n, kernel, strides, pads, ceil).sqrt()
