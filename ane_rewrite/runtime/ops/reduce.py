"""Reductions, softmax, arg-reductions, cumsum, topk and argsort.

``reduce_*(x, axes=None, keep_dims=False)``: ``axes`` None reduces every axis.
``reduce_log_sum(x) = log(Σx)``, ``reduce_log_sum_exp`` is computed stably (max subtracted).
``reduce_argmax/argmin(x, axis=-1, keep_dims=False)`` → int32; ties pick the first index.
``cumsum(x, axis=0, exclusive=False, reverse=False)``.
"""
from __future__ import annotations

import torch

from .registry import axes_of, op, scalar


def _axes(a):
    x = a["x"]
    axes = axes_of(a.get("axes"), x.dim())
    return x, (list(range(x.dim())) if axes is None else axes), bool(scalar(a.get("keep_dims"), False))


def _reduction(fn):
    def run(a, out):
        x, axes, keep = _axes(a)
        if not axes:
            return x
        return fn(x.float() if not x.is_floating_point() else x, axes, keep)
    return run


def _prod(x, axes, keep):
    for axis in sorted(axes, reverse=True):
        x = x.prod(axis, keepdim=keep)
    return x


_REDUCTIONS = {
    "reduce_sum": lambda x, d, k: x.sum(d, keepdim=k),
    "reduce_mean": lambda x, d, k: x.mean(d, keepdim=k),
    "reduce_prod": lambda x, d, k: _prod(x, d, k),
    "reduce_max": lambda x, d, k: x.amax(d, keepdim=k),
    "reduce_min": lambda x, d, k: x.amin(d, keepdim=k),
    "reduce_l1_norm": lambda x, d, k: x.abs().sum(d, keepdim=k),
    "reduce_l2_norm": lambda x, d, k: x.square().sum(d, keepdim=k).sqrt(),
    "reduce_sum_square": lambda x, d, k: x.square().sum(d, keepdim=k),
    "reduce_log_sum": lambda x, d, k: x.sum(d, keepdim=k).log(),
    "reduce_log_sum_exp": lambda x, d, k: torch.logsumexp(x, d, keepdim=k),
}

for _name, _fn in _REDUCTIONS.items():
    op(_name)(_reduction(_fn))


@op("softmax")
def softmax(a, out):
    return torch.softmax(a["x"], dim=scalar(a.get("axis"), -1))


def _arg(fn):
    def run(a, out):
        x = a["x"]
        axis = scalar(a.get("axis"), -1) % max(x.dim(), 1)
        return fn(x, axis, bool(scalar(a.get("keep_dims"), False)))
    return run


def _first_extreme(x, axis, keep, largest):
    """Index of the first max (or min) along ``axis`` — torch's argmax does not promise the first."""
    best = x.amax(axis, keepdim=True) if largest else x.amin(axis, keepdim=True)
    index = torch.arange(x.shape[axis]).reshape([-1 if i == axis else 1 for i in range(x.dim())])
    hit = torch.where(x == best, index, torch.full_like(index, x.shape[axis]))
    return hit.amin(axis, keepdim=keep)


op("reduce_argmax")(_arg(lambda x, d, k: _first_extreme(x, d, k, True)))
op("reduce_argmin")(_arg(lambda x, d, k: _first_extreme(x, d, k, False)))


@op("cumsum")
def cumsum(a, out):
    x, axis = a["x"], scalar(a.get("axis"), 0)
    reverse, exclusive = bool(scalar(a.get("reverse"), False)), bool(scalar(a.get("exclusive"), False))
    y = x.flip(axis) if reverse else x
    y = y.cumsum(axis)
    if exclusive:
        y = y - (x.flip(axis) if reverse else x)
    return y.flip(axis) if reverse else y


@op("topk")
def topk(a, out):
    x, k, axis = a["x"], scalar(a.get("k"), 1), scalar(a.get("axis"), -1)
    ascending = bool(scalar(a.get("ascending"), False))
    order = torch.sort(x, dim=axis, descending=not ascending, stable=True)
    values = order.values.narrow(axis, 0, k)
    indices = order.indices.narrow(axis, 0, k)
    return values, indices


@op("argsort")
def argsort(a, out):
    x, axis = a["x"], scalar(a.get("axis"), -1)
    return torch.sort(x, dim=axis, descending=not bool(scalar(a.get("ascending"), False)), stable=True).indices
