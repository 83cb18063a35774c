"""export(model, example_inputs, path) → a Core ML ML Program (.mlpackage) and its MLModel.

Settings: ML Program, fp16 compute, static shapes (those of the example inputs), integer
token inputs as int32 (coremltools' choice for int64 graph inputs), iOS 16 deployment target,
coremltools' default pass pipeline plus ``fusion``'s channel LayerNorm fusion.
Works on the original model or on a rewritten one. The model is not loaded after conversion
(no Core ML runtime on Linux). ``progress=False`` silences coremltools' progress bars.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import torch

from ..errors import ExportError
from ..frontend import models
from ..frontend.capture import export_program
from . import compat, fusion


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


def export(model: torch.nn.Module, example_inputs: Any, path: str | Path | None = None, *,
           progress: bool = True):
    import coremltools as ct

    compat.install()
    prepared = models.prepare(copy.deepcopy(model))
    program = export_program(prepared, example_inputs)
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
        mlmodel.save(str(path))
    return mlmodel
