"""The registry the op implementations add themselves to, and the helpers they share to read
their arguments (``ops/__init__.py`` imports every implementation module, so that all register)."""
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

