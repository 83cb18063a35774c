"""export(model, example_inputs, path) → a Core ML ML Program (.mlpackage) and its MLModel.

Settings: ML Program, fp16 compute, static shapes (those of the example inputs), integer
token inputs as int32 (coremltools' choice for int64 graph inputs), iOS 16 deployment target,
coremltools' default pass pipeline plus ``fusion``'s channel LayerNorm fusion.

What is converted: a model ``optimize`` returned (a captured ATen graph) is converted as it is
(``program.exported_program``: no second capture, the graph the passes produced and ``verify``
ran); any other module — the baseline, the model as is — is captured first, as ``optimize``
captures it. The model is not loaded after conversion (no Core ML runtime on Linux).
``progress=False`` silences coremltools' progress bars.

``path``: a ``.mlpackage`` in an existing, writable folder, checked before converting; an
existing package is an error unless ``overwrite=True``. The package is written aside and renamed
into place, so an interrupted or failed save leaves nothing partial behind.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import ExportError, InputError
from ..frontend import models
from ..frontend.capture import export_program, split_inputs
from . import compat, fusion
from .program import exported_program, is_captured


@contextlib.contextmanager
def _quiet():
    """coremltools draws tqdm bars over the torch frontend and each MIL pipeline, with no switch."""
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.mil.passes import pass_pipeline

    def passthrough(iterable, *args, **kwargs):
        return iterable

    saved = ops._tqdm, pass_pipeline.tqdm
    ops._tqdm = pass_pipeline.tqdm = passthrough
    try:
        yield
    finally:
        ops._tqdm, pass_pipeline.tqdm = saved


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


def _check_path(path: Path, overwrite: bool) -> None:
    """Before converting: a .mlpackage path in a writable folder, not there yet unless replaced."""
    if path.suffix != ".mlpackage":
        raise ExportError(f"{path}: an ML Program is saved as a .mlpackage folder; name the path so")
    if path.exists() and not overwrite:
        raise ExportError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise ExportError(f"{path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ExportError(f"{path}: the folder {path.parent} is not writable")


def _save(mlmodel, path: Path) -> None:
    """Written aside, then renamed into place: an interrupted save leaves nothing at ``path``
    (and a replaced package stays until the new one is complete)."""
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}.mlpackage")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        mlmodel.save(str(partial))
        if path.exists():
            path.rename(old)
        partial.rename(path)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if old.exists() and not path.exists():
            old.rename(path)
        if isinstance(exc, Exception):
            raise ExportError(f"saving {path} failed: {type(exc).__name__}: {exc}") from exc
        raise
    shutil.rmtree(old, ignore_errors=True)


def export(model: torch.nn.Module, example_inputs: Any, path: str | Path | None = None, *,
           progress: bool = True, overwrite: bool = False):
    import coremltools as ct

    if path is not None:
        path = Path(path)
        _check_path(path, overwrite)
    compat.install()
    if is_captured(model):
        _check_inputs(model, example_inputs)
        program = exported_program(model)
    else:
        program = export_program(models.prepare(copy.deepcopy(model)), example_inputs)
    try:
        with contextlib.nullcontext() if progress else _quiet():
            mlmodel = ct.convert(
                program,
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16,
                minimum_deployment_target=ct.target.iOS16,
                skip_model_load=True,
                pass_pipeline=fusion.pipeline(),
            )
    except Exception as exc:
        raise ExportError(f"coremltools could not convert {type(model).__name__}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if path is not None:
        _save(mlmodel, path)
    return mlmodel
