"""Build one-op MIL programs with coremltools' builder, to run in the interpreter.

``both(build, **arrays)`` returns (coremltools' value, ours): the op built once on constants —
coremltools' own value inference computes its value at construction — and once on program
inputs of the same shapes, compiled and executed by ``ane_rewrite.runtime`` in fp32.
``ours(build, **arrays)`` only executes (for ops that have no value inference in coremltools).
"""
from __future__ import annotations

import numpy as np
import torch

import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import Function, Program, types

from ane_rewrite.runtime import interpreter
from ane_rewrite.runtime.program import compile_program

TARGET = ct.target.iOS17


def _spec(array: np.ndarray):
    dtype = {np.dtype("float32"): types.fp32, np.dtype("int32"): types.int32, np.dtype("bool"): types.bool,
             np.dtype("float16"): types.fp16}[array.dtype]
    return mb.TensorSpec(shape=array.shape, dtype=dtype)


def program(build, **arrays):
    """A program whose inputs are ``arrays``' names and shapes and whose outputs are ``build``'s."""
    inputs = {n: mb.placeholder(shape=a.shape, dtype=_spec(a).dtype) for n, a in arrays.items()}
    prog = Program()
    with Function(inputs, opset_version=TARGET) as fn:
        out = build(**fn.inputs)
        fn.set_outputs(list(out) if isinstance(out, (list, tuple)) else [out])
    prog.add_function("main", fn)
    return prog


def ours(build, precision: str = "fp32", **arrays):
    prog = program(build, **arrays)
    compiled = compile_program(prog, "test program")
    feeds = {name: torch.from_numpy(a) for name, a in zip(compiled.inputs, arrays.values())}
    out = interpreter.run(compiled, feeds, precision)
    values = [v.numpy() for v in out.values()]
    return values[0] if len(values) == 1 else values


def theirs(build, **arrays):
    @mb.program(input_specs=[], opset_version=TARGET)
    def prog():
        out = build(**{n: mb.const(val=a) for n, a in arrays.items()})
        theirs.value = [o.val for o in out] if isinstance(out, (list, tuple)) else out.val
        return out

    return theirs.value


def both(build, **arrays):
    return theirs(build, **arrays), ours(build, **arrays)
