"""Ops that move or copy values: reshape family, transpose, concat/split/stack, tile, pad,
slice_by_index/size, reverse, slice_update, space/depth and pixel shuffles, sliding_windows.

Programs have static shapes, so reshape, reshape_like, expand_dims, squeeze and flatten2d take
the shape the program declares for their output. ``slice_by_index`` follows numpy slicing
(negative strides included); ``begin_mask``/``end_mask`` drop ``begin``/``end`` on their axes,
``squeeze_mask`` indexes ``begin`` and removes the axis. ``pad``'s ``pad`` lists (begin, end)
for the last N axes, first axis first; modes constant, reflect, replicate.
``concat(..., interleave=True)`` interleaves equal-shaped inputs along the axis.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import axes_of, ints, op, scalar


@op("reshape", "reshape_like", "expand_dims", "squeeze", "flatten2d")
def reshape(a, out):
    return a["x"].reshape(out[0].shape)


@op("transpose")
def transpose(a, out):
    return a["x"].permute(ints(a["perm"]))


@op("concat")
def concat(a, out):
    values, axis = a["values"], scalar(a["axis"])
    if scalar(a.get("interleave"), False):
        axis = axis % values[0].dim()
        return torch.stack(values, axis + 1).flatten(axis, axis + 1)
    return torch.cat(values, axis)


@op("split")
def split(a, out):
    x, axis = a["x"], scalar(a["axis"])
    sizes = a.get("split_sizes")
    if sizes is not None:
        return tuple(torch.split(x, ints(sizes), axis))
    n = int(scalar(a["num_splits"]))
    return tuple(torch.split(x, -(-x.shape[axis] // n), axis))


@op("stack")
def stack(a, out):
    return torch.stack(a["values"], scalar(a["axis"]))


@op("tile")
def tile(a, out):
    return a["x"].repeat(ints(a["reps"]))


@op("pad")
def pad(a, out):
    x, p = a["x"], ints(a["pad"])
    mode = a.get("mode") or "constant"
    spec = [v for i in reversed(range(len(p) // 2)) for v in (p[2 * i], p[2 * i + 1])]
    if mode == "constant":
        return F.pad(x, spec, value=scalar(a.get("constant_val"), 0.0))
    if mode not in ("reflect", "replicate"):
        raise ValueError(f"pad mode {mode!r} is not one MIL defines")
    n = len(p) // 2  # torch pads these modes on batched inputs of rank n + 1 or n + 2
    lead = x.shape[:x.dim() - n]
    y = F.pad(x.reshape((1, -1) + x.shape[x.dim() - n:]), spec, mode=mode)
    return y.reshape(lead + y.shape[2:])


def _slice_axis(x, axis, start, stop, step):
    if step > 0:
        return x[(slice(None),) * axis + (slice(start, stop, step),)]
    idx = range(*slice(start, stop, step).indices(x.shape[axis]))
    return x.index_select(axis, torch.tensor(list(idx), dtype=torch.long))


@op("slice_by_index")
def slice_by_index(a, out):
    x = a["x"]
    rank = x.dim()
    begin, end = ints(a["begin"]), ints(a["end"])
    stride = ints(a["stride"]) if a.get("stride") is not None else [1] * rank
    masks = {k: (ints(a[k]) if a.get(k) is not None else [0] * rank) for k in ("begin_mask", "end_mask", "squeeze_mask")}
    squeeze = []
    for axis in range(rank):
        if masks["squeeze_mask"][axis]:  # index begin (0 under begin_mask)
            x = x.narrow(axis, 0 if masks["begin_mask"][axis] else begin[axis] % x.shape[axis], 1)
            squeeze.append(axis)
            continue
        start = None if masks["begin_mask"][axis] else begin[axis]
        stop = None if masks["end_mask"][axis] else end[axis]
        x = _slice_axis(x, axis, start, stop, stride[axis])
    return x.reshape(out[0].shape) if squeeze else x


@op("slice_by_size")
def slice_by_size(a, out):
    x = a["x"]
    for axis, (b, s) in enumerate(zip(ints(a["begin"]), ints(a["size"]))):
        b = b % x.shape[axis] if x.shape[axis] else 0
        x = x.narrow(axis, b, x.shape[axis] - b if s == -1 else s)
    return x


@op("reverse")
def reverse(a, out):
    x = a["x"]
    axes = axes_of(a.get("axes"), x.dim())
    return x.flip(list(range(x.dim())) if axes is None else axes)


@op("slice_update")
def slice_update(a, out):
    x, update = a["x"].clone(), a["update"]
    rank = x.dim()
    index = torch.arange(x.numel()).reshape(x.shape)
    view = slice_by_index({**a, "x": index}, [type(out[0])(tuple(update.shape), "int32")]).reshape(-1)
    x.view(-1)[view] = update.reshape(-1).to(x.dtype)
    return x.reshape(out[0].shape) if rank else x


@op("depth_to_space")
def depth_to_space(a, out):
    """Depth-column-row order (as TensorFlow's): channel (i·b + j)·C' + c → (c, h·b + i, w·b + j)."""
    x, b = a["x"], int(scalar(a["block_size"]))
    n, c, h, w = x.shape
    return x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@op("pixel_shuffle")
def pixel_shuffle(a, out):
    return F.pixel_shuffle(a["x"], int(scalar(a["upscale_factor"])))


@op("space_to_depth")
def space_to_depth(a, out):
    """The inverse of depth_to_space."""
    x, b = a["x"], int(scalar(a["block_size"]))
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)


@op("pixel_unshuffle")
def pixel_unshuffle(a, out):
    return F.pixel_unshuffle(a["x"], int(scalar(a["downscale_factor"])))


@op("sliding_windows")
def sliding_windows(a, out):
    x, axis = a["x"], scalar(a["axis"]) % a["x"].dim()
    windows = x.unfold(axis, int(scalar(a["size"])), int(scalar(a.get("stride"), 1)))
    return windows.movedim(-1, axis + 1)
