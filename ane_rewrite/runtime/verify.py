"""verify(reference, exported, inputs): does the saved ML Program compute the reference's function?

The package (a path, an ``MLModel`` or a loaded ``runtime.Executable``) is executed by
``ane_rewrite.runtime`` — in fp32 (the program's function, apart from precision) or fp16 (every
fp16 value rounded as the program declares it) — on the example inputs and ``draws − 1`` random
draws of the same shapes (``models.draw_inputs``), and compared with the PyTorch reference, output
by output in order. Errors are pooled over the draws (a 2-logit head gives 2 values a draw);
``draws=None`` takes enough draws for every output to pool at least 256 values (3 to 128 draws).
A 2-logit head gives 2 values a draw, and the fp16 PSNR of so few values moves with the draw set:
RoBERTa-base's rewritten package measured −1.4 dB against its baseline's over 32 draws, −0.6 dB
over 128 (DistilBERT: −1.1 dB over 3 draws, +0.7 over 10, +0.2 over 30).
The values of one draw move together (one input image decides all 1000 logits), so a comparison
of two packages (``verify_packages``: the CLI's and the zoo's fp16 verdict) takes at least
``COMPARE_DRAWS`` draws: MaxViT-pico's rewritten package measured −1.37 dB against its baseline
over draws 0–2, +0.46 over 16–18, −0.41 over 0–15, +0.05 over 16–31, −0.16 over 0–31 and 0.00
over 0–63.

    PSNR          20 · log10(max |ref| / rms(ref − exported))
    max rel err   max |ref − exported| / max |ref|

Bars: fp32 — PSNR ≥ 60 dB (as PyTorch against PyTorch; no max-rel bar, since the weights are
stored in fp16 and each carries a relative error up to 2⁻¹¹); fp16 — PSNR ≥ 40 dB and every
value finite (one fp16 rounding costs ~70 dB; below 40 dB an overflow or a cancellation is
likelier than rounding). When the bar fails, the report names the **first diverging MIL op**:
the first op, in program order, whose value departs (below the same bar) from the value of the
graph node it was converted from — matched by name (coremltools names an op's result after the
node, plus ``_cast_fp16``) and shape. The graph is ``source`` when given (the GraphModule the
package was exported from: what ``optimize`` returned), else the reference when it is a captured
graph, else the reference captured as ``export`` captures it (right for a baseline export).
"""
from __future__ import annotations

import copy
import math
import re
from typing import Any

import torch

from ..equivalence.verify import EquivalenceReport, OutputError, _errors, _leaves, _node_values
from ..frontend import models
from ..frontend.capture import call, export_program, split_inputs

BARS = {"fp32": 60.0, "fp16": 40.0}


class _Pooled:
    """Error statistics of one output pooled over draws."""

    def __init__(self):
        self.peak = self.max_abs = self.sq = 0.0
        self.count = 0
        self.nonfinite = False

    def add(self, ref: torch.Tensor, out: torch.Tensor) -> None:
        ref, out = ref.detach().double(), out.detach().double()
        diff = (ref - out).abs()
        if not torch.isfinite(out).all() and torch.isfinite(ref).all():
            self.nonfinite = True
        finite = torch.isfinite(diff)
        self.peak = max(self.peak, ref.abs().max().item() if ref.numel() else 0.0)
        self.max_abs = max(self.max_abs, diff[finite].max().item() if finite.any() else 0.0)
        self.sq += diff[finite].square().sum().item()
        self.count += int(diff.numel())

    def result(self, name: str) -> OutputError:
        if self.nonfinite:
            return OutputError(name, math.inf, math.inf, -math.inf)
        rms = math.sqrt(self.sq / self.count) if self.count else 0.0
        psnr = math.inf if rms == 0 else (20 * math.log10(self.peak / rms) if self.peak > 0 else -math.inf)
        return OutputError(name, self.max_abs, self.max_abs / self.peak if self.peak else
                           (0.0 if self.max_abs == 0 else math.inf), psnr)


def is_exported(candidate) -> bool:
    from pathlib import Path

    from . import Executable

    return isinstance(candidate, (str, Path, Executable)) or hasattr(candidate, "get_spec")


POOLED_VALUES, MAX_DRAWS, COMPARE_DRAWS = 256, 128, 16


def auto_draws(exe) -> int:
    """Draws enough for each output to pool ``POOLED_VALUES`` values (3 to ``MAX_DRAWS``)."""
    sizes = [math.prod(exe.compiled.declared[n].shape) for n in exe.output_names if n in exe.compiled.declared]
    smallest = min((s for s in sizes if s > 0), default=POOLED_VALUES)
    return max(3, min(MAX_DRAWS, math.ceil(POOLED_VALUES / smallest)))


def reference_outputs(reference: torch.nn.Module, example_inputs: Any, draws: int) -> list[tuple[Any, dict]]:
    """(inputs, the reference's outputs) for each draw — computed once, shared by every check."""
    options = models.call_options(reference, example_inputs)
    out = []
    for i in range(draws):
        inputs = models.draw_inputs(example_inputs, i)
        with torch.no_grad():
            out.append((inputs, _leaves(call(reference, inputs, **options))))
    return out


def verify_packages(reference: torch.nn.Module, packages: dict[str, tuple[Any, torch.nn.Module | None]],
                    example_inputs: Any, precisions=("fp32", "fp16"), draws: int | None = None) -> dict:
    """``{name: {precision: report}}`` for packages given as ``{name: (exported, source graph)}``;
    the reference runs once per draw for all of them; ``draws=None``: enough for every package
    (``auto_draws``) and at least ``COMPARE_DRAWS``, since the reports are compared."""
    from . import load

    exes = {name: (load(exported), source) for name, (exported, source) in packages.items()}
    if draws is None:
        draws = max([COMPARE_DRAWS] + [auto_draws(e) for e, _ in exes.values()])
    refs = reference_outputs(reference, example_inputs, draws)
    return {name: {p: verify_exported(reference, exe, example_inputs, draws, p, source, refs) for p in precisions}
            for name, (exe, source) in exes.items()}


def verify_exported(reference: torch.nn.Module, exported, example_inputs: Any, draws: int | None = None,
                    precision: str = "fp32", source: torch.nn.Module | None = None,
                    references: list | None = None) -> EquivalenceReport:
    from . import load

    split_inputs(example_inputs)
    if precision not in BARS:
        raise ValueError(f"precision must be one of {sorted(BARS)}, not {precision!r}")
    exe = load(exported)
    draws = (auto_draws(exe) if references is None else len(references)) if draws is None else draws
    report = EquivalenceReport(draws=draws, psnr_bar=BARS[precision], rel_bar=None, precision=precision)
    refs = references if references is not None else reference_outputs(reference, example_inputs, draws)
    pooled: dict[str, _Pooled] = {}
    worst_draw, worst_psnr = example_inputs, math.inf
    for inputs, ref in refs[:draws]:
        out = exe.run(inputs, precision)
        if len(ref) != len(out):
            report.problems.append(f"the package has {len(out)} outputs {list(out)}, the reference {len(ref)} {list(ref)}")
            break
        for (name, r), (out_name, o) in zip(ref.items(), out.items()):
            if r.numel() != o.numel():
                report.problems.append(f"{name}: the package's {out_name} is {tuple(o.shape)}, not {tuple(r.shape)}")
                continue
            o = o.reshape(r.shape)
            pooled.setdefault(name, _Pooled()).add(r, o)
            draw = _Pooled()
            draw.add(r, o)
            psnr = draw.result(name).psnr
            if psnr < worst_psnr:
                worst_draw, worst_psnr = inputs, psnr
    report.outputs = [p.result(name) for name, p in pooled.items()]
    if not report.ok:
        graph = source if source is not None else reference
        report.divergence = first_diverging_op(graph, exe, worst_draw, precision)
    return report


_SUFFIX = re.compile(r"(_cast_fp16|_cast_fp32|_to_fp16|_to_fp32)+$")


def mil_counterpart(var_name: str) -> str:
    """The graph node a MIL value was named after (coremltools appends ``_cast_fp16`` and kin)."""
    return _SUFFIX.sub("", var_name)


def _graph_values(graph: torch.nn.Module, inputs: Any) -> dict[str, Any]:
    from ..coreml.program import is_captured

    if not is_captured(graph):
        graph = export_program(models.prepare(copy.deepcopy(graph)), inputs).module()
    return _node_values(graph, inputs)


def first_diverging_op(graph: torch.nn.Module, exported, inputs: Any, precision: str = "fp32") -> str | None:
    """The first MIL op whose value departs from its graph counterpart (see the module docstring)."""
    from . import load

    exe = load(exported)
    values = _graph_values(graph, inputs)
    bar = BARS[precision]
    found: list[str] = []
    matched = [0]

    def observe(step, outs):
        if found or step.type == "cast":
            return
        for var, value in zip(step.outputs, outs):
            ref = values.get(mil_counterpart(var))
            if not isinstance(ref, torch.Tensor) or ref.numel() != value.numel():
                continue
            matched[0] += 1
            value = value.reshape(ref.shape)
            if not ref.is_floating_point():
                if not torch.equal(ref.to(value.dtype), value):
                    found.append(f"{step.location}: differs from graph node {mil_counterpart(var)} (integer values)")
                continue
            max_abs, max_rel, psnr = _errors(ref, value)
            if not psnr >= bar:
                found.append(f"{step.location}: PSNR {psnr:.1f} dB against graph node {mil_counterpart(var)} "
                             f"(max abs {max_abs:.3g}, max rel {max_rel:.3g})")
                return

    exe.run(inputs, precision, observe)
    if found:
        return found[0]
    return (f"no MIL op departs from its graph node ({matched[0]} values matched by name); the difference "
            "arises in values with no named counterpart, or only at the outputs")
