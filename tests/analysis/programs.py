"""Synthetic MIL programs for the analyzer's tests."""
from ane_rewrite.analysis import placement
from ane_rewrite.analysis.report import _findings
from ane_rewrite.coreml.mil import MilOp, MilValue


def _v(name, shape, dtype="FLOAT16"):
    return MilValue(name, dtype, tuple(shape))


class P:
    """A tiny program builder: activations from an input, consts with inline values."""

    def __init__(self, inputs=(("x", (1, 64, 1, 128)),)):
        self.inputs = [_v(n, s) for n, s in inputs]
        self.ops: list[MilOp] = []

    def const(self, name, value=None, shape=(), dtype="INT32"):
        self.ops.append(MilOp("const", (), (_v(name, shape, dtype),), {}, value))
        return name

    def op(self, type_, out_shape, dtype="FLOAT16", **params):
        names = {k: (v,) for k, v in params.items()}
        out = f"{type_}_{len(self.ops)}"
        self.ops.append(MilOp(type_, tuple(v for v in params.values()), (_v(out, out_shape, dtype),), names))
        return out

    def program(self) -> placement.Program:
        return placement.Program(self.ops, self.inputs)

    def rules(self) -> set[str]:
        return {f.rule for f in _findings(self.program())}
