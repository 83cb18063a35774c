"""A saved ML Program, loaded back on Linux and compiled into steps the interpreter runs.

Loading uses coremltools' own milproto loader (``frontend.milproto.load``): the package's
protobuf and weight file become a MIL ``Program`` whose ops are coremltools' op classes.
Compilation walks one function once (``main``; a multifunction package's default function, or
the one named): ``const`` ops become values, ``constexpr_*``
weights (palettized, affine-quantized, sparse, cast) are decompressed by their op classes'
``materialized_val_inference``, ops whose value the loader already inferred are values too,
and every other op becomes a ``Step`` — its implementation (``runtime/ops``), where each input
comes from, and its declared outputs. An op type with no implementation, or with nested blocks
(control flow), is an ``ExecutionError`` naming the op, its type and its position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ExecutionError
from .ops import OPS, Out


@dataclass
class Step:
    index: int           # position among the function's ops
    type: str
    name: str
    fn: Callable
    args: dict[str, Any]  # input name → ("var", name) | ("const", value) | ("list", [...])
    outputs: list[str]
    out: list[Out]

    @property
    def location(self) -> str:
        return f"op #{self.index} {self.type} '{self.name}' (→ {', '.join(self.outputs)})"


@dataclass
class Compiled:
    source: str
    inputs: dict[str, Out]
    outputs: list[str]
    consts: dict[str, Any]
    steps: list[Step]
    declared: dict[str, Out]  # every var the steps write and every const: shape and dtype
    states: list[str] = field(default_factory=list)  # inputs that are states (iOS 18), kept by the caller


def _dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types

    dtype = var.dtype
    return types.builtin_to_string(dtype) if dtype is not None else "unknown"


def _out(var) -> Out:
    shape = tuple(int(d) if isinstance(d, (int, np.integer)) else -1 for d in (var.shape or ()))
    return Out(shape, _dtype_name(var))


def const_value(value):
    """A MIL value as the interpreter holds it: str, or a tensor (fp16 widened to fp32 exactly)."""
    if isinstance(value, (str, np.str_)):
        return str(value)
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return str(array.item()) if array.ndim == 0 else [str(v) for v in array.reshape(-1)]
    if array.dtype in (np.float16, np.float64):
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


def load_program(model_or_path):
    """The MIL ``Program`` of a saved .mlpackage (path) or an ``MLModel``."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.exists():
            raise ExecutionError(f"no Core ML model at {path}")
        try:
            model = ct.models.MLModel(str(path), skip_model_load=True)
        except Exception as exc:  # coremltools raises several types for a bad package
            raise ExecutionError(f"{path} is not a Core ML model coremltools can read: {exc}") from exc
        source = str(path)
    elif hasattr(model_or_path, "get_spec"):
        model, source = model_or_path, f"MLModel {getattr(model_or_path, 'package_path', '') or '(in memory)'}"
    else:
        raise ExecutionError(f"cannot execute a {type(model_or_path).__name__}: give a .mlpackage path or an MLModel")
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ExecutionError(f"{source} is a {spec.WhichOneof('Type')} model, not an ML Program")
    program = load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
    program.default_function_name = spec.description.defaultFunctionName or "main"
    return program, source


def _materialized(op):
    if hasattr(op, "materialized_val_inference"):
        return op.materialized_val_inference()
    return op.value_inference()


def compile_program(program, source: str = "program", function: str = "main") -> Compiled:
    if function not in program.functions:
        raise ExecutionError(f"{source} has no function {function!r} (functions: {sorted(program.functions)})")
    fn = program.functions[function]
    if function != "main":
        source = f"{source} (function {function})"
    consts: dict[str, Any] = {}
    declared: dict[str, Out] = {}
    steps: list[Step] = []
    for index, op in enumerate(fn.operations):
        where = f"op #{index} {op.op_type} '{op.name}' in {source}"
        if op.blocks:
            raise ExecutionError(f"{where} has nested blocks (control flow): the interpreter runs straight-line programs only")
        if op.op_type == "const" or op.op_type.startswith("constexpr_") or all(v.val is not None for v in op.outputs):
            try:
                values = _materialized(op) if op.op_type.startswith("constexpr_") else [v.val for v in op.outputs]
            except Exception as exc:  # coremltools' own decompression failed
                raise ExecutionError(f"{where}: cannot decompress its value: {exc}") from exc
            values = values if isinstance(values, (list, tuple)) else [values]
            for var, value in zip(op.outputs, values):
                consts[var.name] = const_value(value)
                declared[var.name] = _out(var)
            continue
        impl = OPS.get(op.op_type)
        if impl is None:
            raise ExecutionError(f"{where}: op type '{op.op_type}' has no implementation in ane_rewrite.runtime "
                                 f"(implemented: {len(OPS)} types, see ane_rewrite/runtime/ops)")
        args = {}
        for name, var in op.inputs.items():
            if isinstance(var, (list, tuple)):
                args[name] = ("list", [("const", consts[v.name]) if v.name in consts else ("var", v.name) for v in var])
            else:
                args[name] = ("const", consts[var.name]) if var.name in consts else ("var", var.name)
        outs = [_out(v) for v in op.outputs]
        for var, o in zip(op.outputs, outs):
            declared[var.name] = o
        steps.append(Step(index, op.op_type, op.name, impl, args, [v.name for v in op.outputs], outs))
    from coremltools.converters.mil.mil import types

    inputs = {name: _out(var) for name, var in fn.inputs.items()}
    states = [name for name, var in fn.inputs.items() if types.is_state(var.sym_type)]
    return Compiled(source, inputs, [v.name for v in fn.outputs], consts, steps, declared, states)
