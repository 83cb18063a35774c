"""Indexing and value-making ops: gather, gather_along_axis, gather_nd, scatter,
scatter_along_axis, scatter_nd, band_part, range_1d, fill, fill_like, one_hot, non_zero.

Indices may be negative (counted from the end, as coremltools' own value inference does).
``gather(x, indices, axis, batch_dims)`` → ``x.shape[:axis] + indices.shape[batch_dims:] +
x.shape[axis+1:]``; ``gather_nd`` indexes the leading ``indices.shape[-1]`` axes (after the
batch axes). ``scatter*`` modes: update, add, sub, mul, div, max, min (duplicate indices in
"update" leave one of the updates, as on device). ``band_part(x, lower, upper)`` keeps the band
of the last two axes (a negative bound keeps that whole triangle).
"""
from __future__ import annotations

import torch

from .registry import op, scalar


def _wrap(indices: torch.Tensor, size: int) -> torch.Tensor:
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


def _gather(x, idx, axis):
    idx = _wrap(idx, x.shape[axis])
    flat = x.index_select(axis, idx.reshape(-1))
    return flat.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _batched(fn, x, idx, b, *rest):
    """Apply ``fn`` to each of the leading ``b`` batch positions shared by ``x`` and ``idx``."""
    if b == 0:
        return fn(x, idx, *rest)
    lead = x.shape[:b]
    xs, ids = x.reshape((-1,) + x.shape[b:]), idx.reshape((-1,) + idx.shape[b:])
    parts = [fn(xs[i], ids[i], *rest) for i in range(xs.shape[0])]
    return torch.stack(parts).reshape(lead + parts[0].shape)


@op("gather")
def gather(a, out):
    x, idx = a["x"], a["indices"]
    axis = scalar(a.get("axis"), 0) % x.dim()
    b = int(scalar(a.get("batch_dims"), 0))
    return _batched(_gather, x, idx, b, axis - b)


@op("gather_along_axis")
def gather_along_axis(a, out):
    x, axis = a["x"], scalar(a.get("axis"), 0) % a["x"].dim()
    return torch.gather(x, axis, _wrap(a["indices"], x.shape[axis]))


def _gather_nd(x, idx):
    k = idx.shape[-1]
    parts = tuple(_wrap(idx[..., i], x.shape[i]) for i in range(k))
    return x[parts]


@op("gather_nd")
def gather_nd(a, out):
    return _batched(_gather_nd, a["x"], a["indices"], int(scalar(a.get("batch_dims"), 0)))


_REDUCE = {"mul": "prod", "div": "prod", "max": "amax", "min": "amin"}


def _updates(mode, updates):
    return {"sub": -updates, "div": 1.0 / updates}.get(mode, updates)


def _combine(data, axis, idx, upd, mode, along: bool):
    """Write ``upd`` into ``data`` at ``idx`` on ``axis`` by ``mode``: index_* ops for whole
    slices (scatter, scatter_nd), scatter_* ops element by element (scatter_along_axis)."""
    if mode == "update":
        return data.scatter(axis, idx, upd) if along else data.index_copy(axis, idx, upd)
    if mode in ("add", "sub"):
        return data.scatter_add(axis, idx, upd) if along else data.index_add(axis, idx, upd)
    if mode not in _REDUCE:
        raise ValueError(f"scatter mode {mode!r} is not one MIL defines")
    return (data.scatter_reduce if along else data.index_reduce)(axis, idx, upd, _REDUCE[mode])


@op("scatter")
def scatter(a, out):
    data, mode = a["data"], a.get("mode") or "add"
    axis = scalar(a.get("axis"), 0) % data.dim()
    idx, upd = _wrap(a["indices"], data.shape[axis]).reshape(-1), _updates(mode, a["updates"]).to(data.dtype)
    return _combine(data, axis, idx, upd.reshape(data.shape[:axis] + idx.shape + data.shape[axis + 1:]), mode, False)


@op("scatter_along_axis")
def scatter_along_axis(a, out):
    data, mode = a["data"], a.get("mode") or "add"
    axis = scalar(a.get("axis"), 0) % data.dim()
    idx, upd = _wrap(a["indices"], data.shape[axis]), _updates(mode, a["updates"]).to(data.dtype)
    return _combine(data, axis, idx, upd, mode, True)


@op("scatter_nd")
def scatter_nd(a, out):
    data, mode = a["data"], a.get("mode") or "add"
    idx = a["indices"]
    k = idx.shape[-1]
    linear = torch.zeros(idx.shape[:-1], dtype=torch.long)
    for i in range(k):
        linear = linear * data.shape[i] + _wrap(idx[..., i], data.shape[i])
    flat = data.reshape((-1,) + data.shape[k:])
    upd = _updates(mode, a["updates"]).to(data.dtype).reshape((-1,) + data.shape[k:])
    return _combine(flat, 0, linear.reshape(-1), upd, mode, False).reshape(data.shape)


@op("band_part")
def band_part(a, out):
    x = a["x"]
    lower, upper = int(scalar(a.get("lower"), -1)), int(scalar(a.get("upper"), -1))
    m, n = x.shape[-2], x.shape[-1]
    rows, cols = torch.arange(m).reshape(-1, 1), torch.arange(n).reshape(1, -1)
    keep = torch.ones(m, n, dtype=torch.bool)
    if lower >= 0:
        keep &= rows - cols <= lower
    if upper >= 0:
        keep &= cols - rows <= upper
    return torch.where(keep, x, torch.zeros_like(x))


@op("range_1d")
def range_1d(a, out):
    return torch.arange(scalar(a["start"]), scalar(a["end"]), scalar(a["step"]))


@op("fill")
def fill(a, out):
    return torch.full(out[0].shape, scalar(a.get("value"), 0.0))


@op("fill_like")
def fill_like(a, out):
    return torch.full(out[0].shape, scalar(a.get("value"), 0.0))


@op("one_hot")
def one_hot(a, out):
    idx, size = a["indices"].long(), int(scalar(a["one_hot_vector_size"]))
    axis = scalar(a.get("axis"), -1) % (idx.dim() + 1)
    hot = torch.nn.functional.one_hot(idx % size, size).movedim(-1, axis)
    on, off = scalar(a.get("on_value"), 1), scalar(a.get("off_value"), 0)
    return torch.where(hot.bool(), torch.tensor(on), torch.tensor(off))


@op("non_zero")
def non_zero(a, out):
    return torch.nonzero(a["x"]).to(torch.int32)
