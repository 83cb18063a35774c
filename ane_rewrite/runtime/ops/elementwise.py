"""Elementwise MIL ops: binary arithmetic and comparisons (numpy broadcasting), unary math,
activations, clip/threshold, select, cast, identity, shape.

Semantics as coremltools documents them (iOS15–17 opsets), e.g. ``inverse(x, ε) = 1/(x+ε)``,
``log(x, ε) = log(x+ε)``, ``rsqrt(x, ε) = 1/sqrt(x+ε)``, ``mod`` and ``floor_div`` round toward
−∞ (numpy's ``mod`` and ``floor_divide``), ``threshold(x, α) = max(x, α)``.
"""
from __future__ import annotations

import math

import torch

from .registry import op, scalar

_BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": torch.true_divide,
    "floor_div": lambda x, y: torch.div(x, y, rounding_mode="floor"), "mod": torch.remainder,
    "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum,
    "equal": torch.eq, "not_equal": torch.ne, "less": torch.lt, "less_equal": torch.le,
    "greater": torch.gt, "greater_equal": torch.ge,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or, "logical_xor": torch.logical_xor,
}

_UNARY = {
    "abs": torch.abs, "acos": torch.acos, "asin": torch.asin, "atan": torch.atan, "atanh": torch.atanh,
    "ceil": torch.ceil, "cos": torch.cos, "cosh": torch.cosh, "erf": torch.erf, "exp": torch.exp,
    "exp2": torch.exp2, "floor": torch.floor, "round": torch.round, "sign": torch.sign, "sin": torch.sin,
    "sinh": torch.sinh, "sqrt": torch.sqrt, "square": torch.square, "tan": torch.tan, "tanh": torch.tanh,
    "logical_not": torch.logical_not, "relu": torch.relu, "relu6": lambda x: torch.clamp(x, 0, 6),
    "sigmoid": torch.sigmoid, "silu": torch.nn.functional.silu, "softplus": torch.nn.functional.softplus,
    "softsign": lambda x: x / (1 + x.abs()), "identity": lambda x: x,
}


def _binary(fn):
    def run(a, out):
        x, y = a["x"], a["y"]
        if x.dtype != y.dtype and x.is_floating_point() != y.is_floating_point():
            x, y = (x.float(), y.float()) if out[0].dtype.startswith("fp") else (x, y)
        return fn(x, y)
    return run


def _unary(fn):
    def run(a, out):
        x = a["x"]
        return fn(x if x.is_floating_point() or fn in (torch.abs, torch.sign, torch.square, torch.logical_not)
                  else x.float())
    return run


for _name, _fn in _BINARY.items():
    op(_name)(_binary(_fn))
for _name, _fn in _UNARY.items():
    op(_name)(_unary(_fn))


@op("inverse")
def inverse(a, out):
    return 1.0 / (a["x"] + scalar(a.get("epsilon"), 1e-4))


@op("log")
def log(a, out):
    return torch.log(a["x"] + scalar(a.get("epsilon"), 1e-45))


@op("rsqrt")
def rsqrt(a, out):
    return torch.rsqrt(a["x"] + scalar(a.get("epsilon"), 1e-12))


@op("clip")
def clip(a, out):
    return torch.clamp(a["x"], scalar(a["alpha"]), scalar(a["beta"]))


@op("threshold")
def threshold(a, out):
    return torch.clamp(a["x"], min=scalar(a["alpha"]))


@op("gelu")
def gelu(a, out):
    x, mode = a["x"], a.get("mode") or "EXACT"
    if mode == "EXACT":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise ValueError(f"gelu mode {mode!r} is not one MIL defines")


@op("elu")
def elu(a, out):
    x, alpha = a["x"], scalar(a.get("alpha"), 1.0)
    return torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@op("leaky_relu")
def leaky_relu(a, out):
    x, alpha = a["x"], scalar(a.get("alpha"), 0.01)
    return torch.where(x >= 0, x, alpha * x)


def _per_channel(value, x):
    """A per-channel parameter of shape (C,) broadcast over axis 1 of ``x``."""
    return value.reshape((1, -1) + (1,) * (x.dim() - 2)) if isinstance(value, torch.Tensor) and value.dim() else value


@op("prelu")
def prelu(a, out):
    x = a["x"]
    return torch.where(x >= 0, x, _per_channel(a["alpha"], x) * x)


@op("clamped_relu")
def clamped_relu(a, out):
    x = a["x"]
    return torch.clamp(torch.where(x >= 0, x, scalar(a.get("alpha"), 0.0) * x), max=scalar(a.get("beta"), 6.0))


@op("linear_activation")
def linear_activation(a, out):
    return scalar(a["alpha"]) * a["x"] + scalar(a.get("beta"), 0.0)


@op("scaled_tanh")
def scaled_tanh(a, out):
    return scalar(a.get("alpha"), 1.0) * torch.tanh(scalar(a.get("beta"), 1.0) * a["x"])


@op("sigmoid_hard")
def sigmoid_hard(a, out):
    return torch.clamp(scalar(a.get("alpha"), 0.2) * a["x"] + scalar(a.get("beta"), 0.5), 0, 1)


@op("softplus_parametric")
def softplus_parametric(a, out):
    x = a["x"]
    return _per_channel(a["alpha"], x) * torch.log1p(torch.exp(_per_channel(a["beta"], x) * x))


@op("thresholded_relu")
def thresholded_relu(a, out):
    x = a["x"]
    return torch.where(x > scalar(a.get("alpha"), 1.0), x, torch.zeros_like(x))


@op("select")
def select(a, out):
    return torch.where(a["cond"].bool(), a["a"], a["b"])


@op("cast")
def cast(a, out):
    return a["x"]  # the interpreter converts every output to its declared dtype


@op("shape")
def shape(a, out):
    return torch.tensor(a["x"].shape, dtype=torch.int32)
