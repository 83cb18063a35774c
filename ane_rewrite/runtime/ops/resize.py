"""Resizing: upsample_nearest_neighbor, resize_nearest_neighbor, upsample_bilinear,
resize_bilinear, crop — on the last two axes.

Nearest neighbour reads input index ⌊i · X_in / X_out⌋. Bilinear interpolation samples the grid
points coremltools documents per mode (axes interpolated one after the other):

    upsample_bilinear  align_corners            i · (X_in − 1)/(X_out − 1)
                       half_pixel_centers       (i + ½) · X_in/X_out − ½   (default: not align_corners)
                       neither                  i · X_in/X_out
    resize_bilinear    STRICT_ALIGN_CORNERS     i · (X_in − 1)/(X_out − 1)
                       ALIGN_CORNERS            the same; (X_in − 1)/2 when X_out = 1
                       DEFAULT                  i · (X_in − X_in/X_out)/(X_out − 1)
                       OFFSET_CORNERS           ½δ + i · δ,  δ = max(1, X_in − 1)/X_out
                       UNALIGN_CORNERS          (i + ½) · X_in/X_out − ½

every grid point clamped to [0, X_in − 1].
"""
from __future__ import annotations

import torch

from .registry import op, scalar


def _nearest(x, size, axis):
    index = (torch.arange(size) * x.shape[axis]) // size
    return x.index_select(axis, index)


@op("upsample_nearest_neighbor", "resize_nearest_neighbor")
def nearest(a, out):
    h, w = out[0].shape[-2:]
    return _nearest(_nearest(a["x"], h, -2 % a["x"].dim()), w, a["x"].dim() - 1)


def _grid(mode: str, x_in: int, x_out: int) -> torch.Tensor:
    i = torch.arange(x_out, dtype=torch.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if x_out == 1:
            g = torch.full_like(i, 0.0 if mode == "STRICT_ALIGN_CORNERS" else (x_in - 1) / 2)
        else:
            g = i * (x_in - 1) / (x_out - 1)
    elif mode == "DEFAULT":
        g = i * ((x_in - x_in / x_out) / (x_out - 1) if x_out > 1 else 0.0)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, x_in - 1) / x_out
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        g = (i + 0.5) * x_in / x_out - 0.5
    elif mode == "LEGACY":
        g = i * x_in / x_out
    else:
        raise ValueError(f"sampling mode {mode!r} is not one MIL defines")
    return g.clamp(0, x_in - 1)


def _linear(x, grid, axis):
    low = grid.floor().long()
    high = (low + 1).clamp(max=x.shape[axis] - 1)
    frac = (grid - low).to(x.dtype).reshape([-1 if d == axis else 1 for d in range(x.dim())])
    return x.index_select(axis, low) * (1 - frac) + x.index_select(axis, high) * frac


def _bilinear(x, out_hw, mode):
    r = x.dim()
    y = _linear(x, _grid(mode, x.shape[-2], out_hw[0]), r - 2)
    return _linear(y, _grid(mode, x.shape[-1], out_hw[1]), r - 1)


@op("upsample_bilinear")
def upsample_bilinear(a, out):
    align = bool(scalar(a.get("align_corners"), True))
    half = bool(scalar(a.get("half_pixel_centers"), not align))
    mode = "STRICT_ALIGN_CORNERS" if align else ("UNALIGN_CORNERS" if half else "LEGACY")
    return _bilinear(a["x"], out[0].shape[-2:], mode)


@op("resize_bilinear")
def resize_bilinear(a, out):
    return _bilinear(a["x"], out[0].shape[-2:], a.get("sampling_mode") or "DEFAULT")


@op("crop")
def crop(a, out):
    x = a["x"]
    (top, bottom), (left, right) = [tuple(int(v) for v in a[k].tolist()) for k in ("crop_height", "crop_width")]
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]
