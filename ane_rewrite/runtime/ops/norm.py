"""Normalisations: layer_norm, batch_norm, instance_norm, l2_norm, local_response_norm.

``layer_norm(x, axes, γ, β, ε=1e-5)``: mean and biased variance over ``axes`` (any axes, not
only trailing ones; γ, β have the shape of ``x`` on those axes). ``batch_norm`` normalises axis 1
with the given statistics; ``instance_norm`` over the spatial axes (2…) of each (n, c);
``l2_norm(x, ε=1e-6) = x / sqrt(Σx² + ε)`` over the last three axes; ``local_response_norm``
``x / (k + α/size · Σ_window x²)^β`` over channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import axes_of, op, scalar


def _on_axes(value, x, axes):
    if value is None:
        return None
    return value.reshape([x.shape[i] if i in axes else 1 for i in range(x.dim())])


def _affine(y, gamma, beta):
    if gamma is not None:
        y = y * gamma
    return y if beta is None else y + beta


def _normalise(x, axes, eps, gamma, beta):
    centred = x - x.mean(axes, keepdim=True)
    return _affine(centred * torch.rsqrt(centred.square().mean(axes, keepdim=True) + eps), gamma, beta)


@op("layer_norm")
def layer_norm(a, out):
    x = a["x"]
    axes = axes_of(a.get("axes"), x.dim())
    axes = list(range(x.dim())) if axes is None else sorted(axes)
    return _normalise(x, axes, scalar(a.get("epsilon"), 1e-5), _on_axes(a.get("gamma"), x, axes),
                      _on_axes(a.get("beta"), x, axes))


def _channel(value, x):
    return None if value is None else value.reshape((1, -1) + (1,) * (x.dim() - 2))


@op("batch_norm")
def batch_norm(a, out):
    x = a["x"]
    y = (x - _channel(a["mean"], x)) * torch.rsqrt(_channel(a["variance"], x) + scalar(a.get("epsilon"), 1e-5))
    return _affine(y, _channel(a.get("gamma"), x), _channel(a.get("beta"), x))


@op("instance_norm")
def instance_norm(a, out):
    x = a["x"]
    return _normalise(x, list(range(2, x.dim())), scalar(a.get("epsilon"), 1e-5),
                      _channel(a.get("gamma"), x), _channel(a.get("beta"), x))


@op("l2_norm")
def l2_norm(a, out):
    x = a["x"]
    axes = list(range(x.dim() - 3, x.dim()))
    return x / torch.sqrt(x.square().sum(axes, keepdim=True) + scalar(a.get("epsilon"), 1e-6))


@op("local_response_norm")
def local_response_norm(a, out):
    return F.local_response_norm(a["x"], int(scalar(a["size"])), scalar(a.get("alpha"), 1e-4),
                                 scalar(a.get("beta"), 0.75), scalar(a.get("k"), 1.0))
