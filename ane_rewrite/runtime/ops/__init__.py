"""The MIL op implementations the interpreter runs, by op type.

Each implementation takes the op's arguments (``Args``: a tensor per tensor input, a ``str`` per
string input, ``None`` for an optional input not given) and the op's declared outputs (``Out``:
static shape and dtype), and returns a tensor or a tuple of tensors. Implementations compute in
whatever float dtype they are given; the interpreter decides the precision (see
``interpreter.py``). An op type with no implementation here is an error at load time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

OPS: dict[str, Callable] = {}


@dataclass(frozen=True)
class Out:
    shape: tuple[int, ...]
    dtype: str  # MIL's name: fp16, fp32, int32, bool, ...


def op(*names: str):
    """Register the decorated function as the implementation of the MIL op types ``names``."""
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return register


def ints(value) -> list[int]:
    """A const integer tensor (or scalar) as a list of Python ints."""
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def scalar(value, default=None):
    if value is None:
        return default
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def axes_of(value, rank: int) -> list[int] | None:
    """Axes as non-negative ints, or None when not given (all axes)."""
    if value is None:
        return None
    return [a % rank if rank else 0 for a in ints(value)]


from . import elementwise, index, linalg, norm, pool, reduce, resize, shape, state  # noqa: E402  (they register)

MODULES = (elementwise, index, linalg, norm, pool, reduce, resize, shape, state)
