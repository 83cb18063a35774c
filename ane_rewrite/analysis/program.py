"""The exported program as the placement rules and the estimator read it: its ops with the
look-ups they need (producers, values, constants), value sizes, weights as stored, and the
peak of live activations."""
from __future__ import annotations

import math
from functools import cached_property

from ..coreml.mil import MilOp, MilValue, dtype_bits
from ..hardware import ELEMENT_BYTES, shape_bytes

SHAPE_OPS = ("const", "shape", "cast")  # not activations of their own


def nbytes(v: MilValue, padded: bool = False) -> int:
    """Bytes of a MIL value (see ``shape_bytes``); a flexible shape counts one element; a
    sub-byte dtype (a palettized weight's UINT4 indices) at its bits."""
    size = ELEMENT_BYTES.get(v.dtype)
    if size is None and dtype_bits(v.dtype) < 8:
        return -(-math.prod(max(d, 1) for d in v.shape) * dtype_bits(v.dtype) // 8)
    size = size or 4
    if any(d < 0 for d in v.shape):
        return size
    return shape_bytes(v.shape, size, padded)


class Program:
    """The exported program with the look-ups the rules need."""

    def __init__(self, ops: list[MilOp], inputs: list[MilValue]):
        self.ops = ops
        self.inputs = inputs
        self.input_names = {v.name for v in inputs}
        self.producer = {o.name: op for op in ops for o in op.outputs}
        self.values = {o.name: o for op in ops for o in op.outputs} | {v.name: v for v in inputs}

    def const(self, op: MilOp, param: str):
        """The inline value of a const parameter of op (a scalar for one element), or None."""
        names = op.params.get(param, ())
        src = self.producer.get(names[0]) if names else None
        if src is None or src.type != "const" or src.value is None:
            return None
        return src.value[0] if len(src.value) == 1 else src.value

    def arg(self, op: MilOp, param: str) -> MilValue | None:
        names = op.params.get(param, ())
        return self.values.get(names[0]) if names else None

    @cached_property
    def weight_bytes(self) -> int:
        """Bytes of every constant as stored (weights, and the small consts of op parameters): a
        compressed weight at its compressed size, not at the dense size it decompresses to."""
        stored = [sum(nbytes(o) for o in op.outputs) if op.type == "const" else op.stored_bytes
                  for op in self.ops if op.type.startswith("const")]
        return sum(stored)

    def stored_bytes(self, name: str) -> int:
        """Bytes a constant value is stored in: a ``constexpr_*`` op's value at the size of its
        compressed data (attributes, or its const inputs in the iOS 18 form)."""
        src = self.producer.get(name)
        if src is None or not src.type.startswith("constexpr"):
            return nbytes(self.values[name])
        return src.stored_bytes + sum(self.stored_bytes(n) for n in src.inputs if self.is_const(n))

    @cached_property
    def peak_activations(self) -> tuple[int, int]:
        """(the largest sum of live activation bytes, padded; the op index where it occurs):
        a value lives from its producer to its last reader (program outputs to the end)."""
        last_use: dict[str, int] = {}
        for i, op in enumerate(self.ops):
            for name in op.inputs:
                last_use[name] = i
        live, peak, at = 0, 0, 0
        ends: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            if op.type not in SHAPE_OPS:
                for o in op.outputs:
                    size = nbytes(o, padded=True)
                    live += size
                    end = last_use.get(o.name, len(self.ops))
                    ends[end] = ends.get(end, 0) + size
            if live > peak:
                peak, at = live, i
            live -= ends.pop(i, 0)
        return peak, at

    def is_const(self, name: str) -> bool:
        src = self.producer.get(name)
        return src is not None and src.type.startswith("const")

    def from_input(self, name: str, depth: int = 8) -> bool:
        """Whether a value is computed from a model input within a few ops (casts, adds)."""
        if name in self.input_names:
            return True
        src = self.producer.get(name)
        return depth > 0 and src is not None and any(self.from_input(i, depth - 1) for i in src.inputs)
