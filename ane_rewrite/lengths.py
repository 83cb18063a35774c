"""optimize_lengths(model, seq_lens) → Lengths: one rewrite per sequence length, one package.

A captured graph has static shapes, so a model serving several lengths is rewritten once per
length — each rewrite chooses its own softmax chunking and attention form for its length — and
exported as one multifunction ML Program: a function ``seq_<N>`` per length, the weights stored
once (coremltools keeps one copy of a constant every function holds; ``coreml.export.
save_multifunction``). The baseline is exported alike (``baseline=True``). The analyzer
(``analyze(path, function=)``) and the executor (``runtime.load(path, function)``) take one
function at a time; ``Lengths.verify_package`` executes every function against the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch.fx import GraphModule

from .coreml.export import export, save_multifunction
from .coreml.saving import check_path
from .errors import InputError
from .frontend import models
from .optimize import optimize
from .runtime import load
from .runtime.verify import verify_packages


def function_name(seq_len: int) -> str:
    return f"seq_{seq_len}"


class Lengths:
    """The model rewritten for each length: ``rewritten[N]`` (a GraphModule with ``.ane_report``)
    and ``example_inputs[N]``; the first length is the package's default function."""

    def __init__(self, model: torch.nn.Module, rewritten: dict[int, GraphModule], example_inputs: dict[int, Any]):
        self.model, self.rewritten, self.example_inputs = model, rewritten, example_inputs

    @property
    def functions(self) -> dict[str, int]:
        return {function_name(n): n for n in self.rewritten}

    def export(self, path, *, baseline: bool = False, precision: str = "fp16", compress: str | None = None,
               overwrite: bool = False, progress: bool = False) -> Path:
        """One package, a function per length (``seq_<N>``), weights shared; ``baseline=True``
        exports the model as it is instead of the rewrites (for comparison)."""
        path = Path(path)
        check_path(path, overwrite)  # before converting; export checks ``compress`` before converting
        converted = {}
        for n, gm in self.rewritten.items():
            converted[function_name(n)] = export(self.model if baseline else gm, self.example_inputs[n],
                                                 precision=precision, progress=progress, compress=compress,
                                                 ios18=compress is not None)
        metadata = {"ane_rewrite.seq_lens": ",".join(str(n) for n in self.rewritten)}
        save_multifunction(converted, path, default=next(iter(converted)), overwrite=overwrite, metadata=metadata,
                           progress=progress)
        return path

    def verify_package(self, path, precisions=("fp32", "fp16"), draws: int | None = None, baseline: bool = False) -> dict:
        """``{N: {precision: EquivalenceReport}}``: each function of the package executed here
        against the model on its length's inputs (``runtime.verify``)."""
        out = {}
        for name, n in self.functions.items():
            exe = load(path, name)
            source = None if baseline else self.rewritten[n]
            out[n] = verify_packages(self.model, {name: (exe, source)}, self.example_inputs[n], precisions, draws)[name]
        return out


def optimize_lengths(model: torch.nn.Module, seq_lens, *, batch: int | None = None,
                     example_inputs: Callable[[int], Any] | None = None, **options) -> Lengths:
    """``model`` rewritten once per length of ``seq_lens`` (distinct, positive; their order is
    the package's, the first its default function). ``example_inputs(N)`` builds a length's
    inputs; by default the model-family adapter does (``models.example_inputs``). ``options``
    go to ``optimize`` (safe mode, pipeline options)."""
    lens = [int(n) for n in seq_lens]
    if not lens or any(n <= 0 for n in lens) or len(set(lens)) != len(lens):
        raise InputError(f"seq_lens must be distinct positive lengths, not {list(seq_lens)}")
    build = example_inputs or (lambda n: models.example_inputs(model, seq_len=n, batch=batch))
    examples = {n: build(n) for n in lens}
    rewritten = {n: optimize(model, examples[n], **options) for n in lens}
    return Lengths(model, rewritten, examples)
