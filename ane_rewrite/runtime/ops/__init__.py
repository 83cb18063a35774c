"""The MIL op implementations the interpreter runs, by op type.

Each implementation takes the op's arguments (``Args``: a tensor per tensor input, a ``str`` per
string input, ``None`` for an optional input not given) and the op's declared outputs (``Out``:
static shape and dtype), and returns a tensor or a tuple of tensors. Implementations compute in
whatever float dtype they are given; the interpreter decides the precision (see
``interpreter.py``). An op type with no implementation here is an error at load time.
"""
from __future__ import annotations

from . import elementwise, index, linalg, norm, pool, reduce, resize, shape, state  # they register
from .registry import OPS, Out, axes_of, ints, op, scalar

MODULES = (elementwise, index, linalg, norm, pool, reduce, resize, shape, state)

__all__ = ["MODULES", "OPS", "Out", "axes_of", "ints", "op", "scalar"]
