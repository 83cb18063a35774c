"""optimize(model) → a rewritten copy of the model, callable like the original."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch.fx import GraphModule

from .errors import InputError
from .frontend import models
from .frontend.capture import capture, split_inputs
from .rewrite.pipeline import Pipeline, PipelineResult


def _unlowered_regions(captured: GraphModule, report: PipelineResult) -> dict[str, str]:
    from .passes import unlowered_regions

    return unlowered_regions(captured, report)


def optimize(model: torch.nn.Module, example_inputs: Any = None, *, seq_len: int = 128,
             batch: int = 1, pipeline: Pipeline | None = None, **options) -> GraphModule:
    """Capture a copy of ``model`` and rewrite it into the form the ANE runs well.

    ``example_inputs``: a tuple of positional arguments or a dict of keyword arguments; when
    omitted, the model-family adapter builds them (``seq_len`` and ``batch`` for text models).
    The returned GraphModule takes the same inputs (same shapes: capture is static), keeps the
    original parameter names and shapes (``load_state_dict`` of the original works), and
    exposes ``.example_inputs`` (what it was captured with) and ``.ane_report`` (what each
    pass did, and every candidate it declined with the reason). ``model`` is not modified.

    ``options`` go to ``passes.default_pipeline``: ``max_queries_per_chunk`` (512) and
    ``max_chunk_bytes`` (1 MiB) set the softmax chunking. An unknown option is an error.
    """
    if example_inputs is None:
        example_inputs = models.example_inputs(model, seq_len=seq_len, batch=batch)
    split_inputs(example_inputs)  # fail early on malformed inputs
    if pipeline is None:
        import inspect

        from .passes import default_pipeline

        known = set(inspect.signature(default_pipeline).parameters)
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        pipeline = default_pipeline(**options)
    elif options:
        raise InputError(f"options {', '.join(sorted(options))} configure the default pipeline; "
                         "they cannot be combined with pipeline=")
    gm = capture(model, example_inputs)
    pristine = copy.deepcopy(gm)
    report: PipelineResult = pipeline(gm)
    keep = _unlowered_regions(pristine, report)
    if keep:  # an attention left batched: its projections keep their form, and the report says so
        from .passes import mark_kept, merge_reasons

        gm = pristine
        mark_kept(gm, keep)
        first, report = report, pipeline(gm)
        merge_reasons(first, report)
    gm.example_inputs = example_inputs
    gm.ane_report = report
    return gm

