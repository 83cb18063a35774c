"""optimize(model) → a rewritten copy of the model, callable like the original."""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.fx import GraphModule

from .equivalence.guard import Guard
from .errors import EquivalenceError, InputError
from .frontend import models
from .frontend.capture import capture, split_inputs
from .frontend.experts import data_dependent_routing, experts_modules
from .rewrite.pipeline import Pipeline, PipelineResult
from .rewrite.rules import Declined, PassResult
from .rewrite.snapshot import Snapshot


def _keep_unlowered_regions(captured: Snapshot, pipeline: Pipeline, gm: GraphModule,
                            report: PipelineResult, guarded: dict) -> PipelineResult:
    """An attention left batched keeps its projections' form: ``gm`` is put back as captured
    (``captured``, the snapshot taken before the passes) and rewritten again with those
    projections marked; the report keeps the first run's reasons."""
    from .passes import declined_attentions, mark_kept, merge_reasons, unlowered_regions

    declined = declined_attentions(report, gm.graph)
    if not declined:
        return report
    keep = unlowered_regions(captured.graph, declined)  # read only: no copy
    if not keep:
        return report
    captured.restore(gm)
    mark_kept(gm, keep)
    second = pipeline(gm, **guarded)
    merge_reasons(report, second)
    return second


def _capture(model: torch.nn.Module, example_inputs: Any, safe: bool, strict: bool) -> tuple[GraphModule, PassResult | None]:
    """The model captured with its mixture-of-experts collections evaluated densely
    (``frontend/experts.py``), and what that did as the report's first entry ("experts"): the
    collections made dense, and each op left that routes by data, declined with the reason. In
    safe mode the dense capture is checked against the static one (transformers' own routing) as
    a pass is: a difference rolls it back to the static capture, or raises with ``strict``."""
    moe = experts_modules(model)
    result = PassResult("experts", Counter(dense_experts=len(moe)) if moe else Counter())
    gm = capture(model, example_inputs, dense_moe=bool(moe))
    if moe and safe:
        static = capture(model, example_inputs)
        problem = _guard(static, example_inputs)(gm)
        if problem is not None and strict:
            raise EquivalenceError(f"experts (evaluated densely) change what the model computes: {problem}")
        if problem is not None:
            result.roll_back(problem)
            gm = static
    for where in data_dependent_routing(gm.graph):
        result.declined.append(Declined("static_routing", where.split(" ")[0], f"{where}: routes tokens by "
                                        "their values (a data-dependent shape): left as it is; it will not convert"))
    return gm, (result if moe or result.declined else None)


def _guard(reference: GraphModule, example_inputs: Any) -> Guard:
    try:
        return Guard(reference, example_inputs)
    except Exception as exc:  # the captured graph fails on its own inputs: they are wrong for it
        raise InputError(f"the model fails on its example inputs (or on a draw like them): "
                         f"{type(exc).__name__}: {exc}") from exc


def optimize(model: torch.nn.Module, example_inputs: Any = None, *, seq_len: int | None = None,
             batch: int | None = None, pipeline: Pipeline | None = None, safe: bool = True, strict: bool = False,
             **options) -> GraphModule:
    """Capture a copy of ``model`` and rewrite it into the form the ANE runs well.

    ``example_inputs``: a tuple of positional arguments or a dict of keyword arguments; when
    omitted, the model-family adapter builds them (``seq_len``, 128 unless given, and ``batch``,
    1, for text models; a saved ``.pt2`` program's own).
    The returned GraphModule takes the same inputs (same shapes: capture is static), keeps the
    original parameter names and shapes (``load_state_dict`` of the original works), and
    exposes ``.example_inputs`` (what it was captured with) and ``.ane_report`` (what each
    pass did, and every candidate it declined with the reason). ``model`` is not modified.

    Safe mode (``safe=True``, the default): every pass is checked against the captured model on
    the example inputs and a fresh draw (new values; left- and right-padded mask rows); a pass
    that changes what the model computes (fp32: max rel error > 1e-4 or PSNR < 60 dB), or that
    fails, is rolled back and reported in ``.ane_report`` (``rolled_back``: pass and reason, with
    the first diverging node), and the rest of the pipeline runs. ``strict=True`` raises
    ``EquivalenceError`` instead. ``safe=False`` runs the passes unchecked.

    ``options`` go to ``passes.default_pipeline`` (checked as a ``passes.PassOptions``):
    ``max_queries_per_chunk`` (512) and ``max_chunk_bytes`` (1 MiB) set the softmax chunking;
    ``lower_every_attention`` (False) lowers every attention per head, also where the estimate
    says its batched form is faster. An unknown option or a bad value is an ``InputError``.
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
        try:
            pipeline = default_pipeline(**options)
        except ValueError as exc:
            raise InputError(f"bad option: {exc}") from exc
    elif options:
        raise InputError(f"options {', '.join(sorted(options))} configure the default pipeline; "
                         "they cannot be combined with pipeline=")
    gm, experts = _capture(model, example_inputs, safe, strict)
    captured = Snapshot(gm)
    guarded = {"guard": _guard(captured.module(gm), example_inputs), "strict": strict} if safe else {}
    report: PipelineResult = pipeline(gm, **guarded)
    report = _keep_unlowered_regions(captured, pipeline, gm, report, guarded)
    if experts is not None:
        report.results.insert(0, experts)
    gm.example_inputs = example_inputs
    gm.ane_report = report
    return gm

