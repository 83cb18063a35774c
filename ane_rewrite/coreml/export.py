"""export(model, example_inputs, path) → a Core ML ML Program (.mlpackage) and its MLModel.

Settings: ML Program, fp16 compute, static shapes (those of the example inputs), integer
token inputs as int32 (coremltools' choice for int64 graph inputs), iOS 16 deployment target,
coremltools' default pass pipeline plus ``fusion``'s channel LayerNorm fusion.

What is converted: a model ``optimize`` returned (a captured ATen graph) is converted as it is
(``program.exported_program``: no second capture, the graph the passes produced and ``verify``
ran); any other module — the baseline, the model as is — is captured first, as ``optimize``
captures it. The model is not loaded after conversion (no Core ML runtime on Linux).
``progress=False`` silences coremltools' progress bars.

``states`` (a captured graph only): ``{input name: (state name, output index)}`` — inputs that
are Core ML states, each updated in place by an output (``program.exported_program``); such a
model targets iOS 18 (states' first release). ``precision="fp32"`` keeps weights and compute in
fp32 (a reference export; the ANE runs fp16). ``compress`` ("palettize4", "palettize6", "int8";
``compress.py``) compresses the weights after conversion. ``ios18=True`` targets iOS 18 (a
multifunction package of compressed weights needs it: coremltools joins no iOS 16 ``constexpr``
op). ``save_multifunction`` puts several converted models in one package, one function each,
weights shared.

``path``: a ``.mlpackage`` in an existing, writable folder, checked before converting; an
existing package is an error unless ``overwrite=True``. The package is written aside and renamed
into place, so an interrupted or failed save leaves nothing partial behind.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..errors import ExportError, InputError
from ..frontend import models
from ..frontend.capture import export_program, split_inputs
from ..frontend.experts import data_dependent_routing, routing_error
from . import compat, fusion
from .program import exported_program, is_captured
from .saving import bars, check_path, save


def _check_inputs(gm, example_inputs: Any) -> None:
    """A captured graph has static shapes: the example inputs must be the ones it was built for."""
    import torch.fx._pytree as fx_pytree

    spec = getattr(getattr(gm.graph._codegen, "pytree_info", None), "in_spec", None)
    expected = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
    try:
        given = fx_pytree.tree_flatten_spec(split_inputs(example_inputs), spec) if spec else None
    except Exception as exc:  # pytree raises several types for a structure mismatch
        raise InputError(f"example inputs do not have the structure the model was captured with: {exc}") from exc
    if given is None:
        return
    for node_val, value, name in zip(expected, given, [n.name for n in gm.graph.nodes if n.op == "placeholder"]):
        if isinstance(value, torch.Tensor) and (tuple(value.shape) != tuple(node_val.shape) or value.dtype != node_val.dtype):
            raise InputError(f"input {name} is {tuple(value.shape)} {value.dtype}; the model was captured with "
                             f"{tuple(node_val.shape)} {node_val.dtype} (shapes are static: optimize again for others)")


PRECISIONS = ("fp16", "fp32")


def _state_types(model, states: dict) -> list:
    import coremltools as ct
    import numpy as np

    values = {n.name: n.meta["val"] for n in model.graph.nodes if n.op == "placeholder"}
    dtype = np.float16  # Core ML states are fp16 only ("State only support fp16 dtype", coremltools 9.0)
    return [ct.StateType(wrapped_type=ct.TensorType(shape=tuple(values[name].shape), dtype=dtype), name=state)
            for name, (state, _) in states.items()]


def export(model: torch.nn.Module, example_inputs: Any, path: str | Path | None = None, *,
           progress: bool = True, overwrite: bool = False, states: dict | None = None, precision: str = "fp16",
           compress: str | None = None, ios18: bool = False):
    import coremltools as ct

    from .compress import check_kind, compress as compress_weights

    if compress is not None:
        check_kind(compress)  # before converting, not after
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if path is not None:
        path = Path(path)
        check_path(path, overwrite)
    compat.install()
    if is_captured(model):
        _check_inputs(model, example_inputs)
        program = exported_program(model, states)
    elif states:
        raise ExportError("states are inputs of a captured graph (what optimize returns), not of a module")
    else:
        program = export_program(models.prepare(copy.deepcopy(model)), example_inputs)
    routed = data_dependent_routing(program.graph)
    if routed:
        raise ExportError(routing_error(routed))
    stateful = {"states": _state_types(model, states)} if states else {}
    try:
        with bars(progress):
            mlmodel = ct.convert(
                program,
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                minimum_deployment_target=ct.target.iOS18 if states or ios18 else ct.target.iOS16,
                skip_model_load=True,
                pass_pipeline=fusion.pipeline(),
                **stateful,
            )
    except Exception as exc:
        raise ExportError(f"coremltools could not convert {type(model).__name__}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if compress is not None:
        mlmodel = compress_weights(mlmodel, compress, progress)
    if path is not None:
        save(mlmodel, path)
    return mlmodel


def save_multifunction(functions: dict[str, Any], path: str | Path, default: str, *, overwrite: bool = False,
                       metadata: dict[str, str] | None = None, progress: bool = False) -> None:
    """Several converted models (``{function name: MLModel}``, each with one function ``main``)
    saved as one package, one function each; weights they share are stored once. ``metadata``:
    the package's user-defined metadata (the functions' own is not carried over by coremltools)."""
    import tempfile

    import coremltools as ct

    path = Path(path)
    check_path(path, overwrite)
    if default not in functions:
        raise ExportError(f"default function {default!r} is not one of {sorted(functions)}")
    with tempfile.TemporaryDirectory(prefix="ane_multifunction_") as tmp:
        desc = ct.utils.MultiFunctionDescriptor()
        for name, mlmodel in functions.items():
            part = Path(tmp) / f"{name}.mlpackage"
            mlmodel.save(str(part))
            desc.add_function(str(part), src_function_name="main", target_function_name=name)
        desc.default_function_name = default
        joined = Path(tmp) / "joined.mlpackage"
        try:
            with bars(progress):
                ct.utils.save_multifunction(desc, str(joined))
        except Exception as exc:
            raise ExportError(f"coremltools could not join {sorted(functions)}: {type(exc).__name__}: {exc}") from exc
        joined_model = ct.models.MLModel(str(joined), skip_model_load=True)
        for key, value in (metadata or {}).items():
            joined_model.user_defined_metadata[key] = value
        save(joined_model, path)
