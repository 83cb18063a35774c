"""Writing a package: coremltools' progress bars on or off, the path checked before converting,
and the save itself, atomic. Shared by the export, compression, several lengths and the
text-generation packages."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import ExportError


@contextlib.contextmanager
def _quiet():
    """coremltools draws tqdm bars over the torch frontend, each MIL pipeline and each weight
    compression pass, with no switch."""
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.mil.passes import pass_pipeline
    from coremltools.optimize.coreml import _post_training_quantization as ptq, _quantization_passes as qp

    def passthrough(iterable, *args, **kwargs):
        return iterable

    saved = ops._tqdm, pass_pipeline.tqdm, ptq.tqdm, qp.tqdm
    ops._tqdm = pass_pipeline.tqdm = ptq.tqdm = qp.tqdm = passthrough
    try:
        yield
    finally:
        ops._tqdm, pass_pipeline.tqdm, ptq.tqdm, qp.tqdm = saved


def bars(progress: bool):
    """coremltools' progress bars as they are (``progress=True``), or silenced."""
    return contextlib.nullcontext() if progress else _quiet()


def check_path(path: Path, overwrite: bool) -> None:
    """Before converting: a .mlpackage path in a writable folder, not there yet unless replaced."""
    if path.suffix != ".mlpackage":
        raise ExportError(f"{path}: an ML Program is saved as a .mlpackage folder; name the path so")
    if path.exists() and not overwrite:
        raise ExportError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise ExportError(f"{path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ExportError(f"{path}: the folder {path.parent} is not writable")


def save(mlmodel, path: Path) -> None:
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
