"""verify(reference, candidate, inputs): do two modules compute the same function?

Both modules run on the example inputs and on ``draws - 1`` random draws of the same shapes
(``models.draw_inputs``: floats from a normal distribution; integers uniform between the
example's min and max, so token ids stay inside the vocabulary; 0/1 inputs, attention masks,
as padded masks of random lengths: right-padded in odd draws, rows left- and right-padded
alternately in even ones). Per output:

    max abs error   max |ref − cand|
    max rel error   max |ref − cand| / max |ref|
    PSNR            20 · log10(max |ref| / rms(ref − cand))   (inf when equal)

An inf or NaN the reference computes counts as equal where the candidate has the same value.

The bar: PSNR ≥ 60 dB and max rel error ≤ 1e-4 on every output of every draw. When it fails
and the candidate is a rewritten GraphModule, the report names the first node of the candidate
graph whose value departs from its counterpart in the reference graph.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx._pytree as fx_pytree
from torch.fx import GraphModule, Interpreter
from torch.utils import _pytree as pytree

from ..errors import InputError
from ..frontend import models
from ..frontend.capture import call, capture, split_inputs
from ..passes._layouts import channels_last

PSNR_BAR = 60.0
REL_BAR = 1e-4


@dataclass
class OutputError:
    name: str
    max_abs: float
    max_rel: float
    psnr: float

    def __str__(self) -> str:
        return f"{self.name}: PSNR {self.psnr:.1f} dB, max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"


@dataclass
class EquivalenceReport:
    outputs: list[OutputError] = field(default_factory=list)
    draws: int = 0
    problems: list[str] = field(default_factory=list)
    divergence: str | None = None
    psnr_bar: float = PSNR_BAR
    rel_bar: float | None = REL_BAR  # None: not barred (an fp16-weight artefact)
    precision: str | None = None     # "fp32" / "fp16" when the candidate is an executed export

    @property
    def psnr(self) -> float:
        return min((o.psnr for o in self.outputs), default=math.inf)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def ok(self) -> bool:
        return (bool(self.outputs) and not self.problems and self.psnr >= self.psnr_bar
                and (self.rel_bar is None or self.max_rel <= self.rel_bar))

    def __str__(self) -> str:
        what = f"executed {self.precision} export " if self.precision else ""
        head = (f"{what}{'equivalent' if self.ok else 'NOT equivalent'} over {self.draws} draws: "
                f"PSNR {self.psnr:.1f} dB, max rel err {self.max_rel:.3g}")
        lines = [head] + [f"  {o}" for o in self.outputs] + [f"  problem: {p}" for p in self.problems]
        if self.divergence:
            lines.append(f"  first divergence: {self.divergence}")
        return "\n".join(lines)


def _errors(ref: torch.Tensor, cand: torch.Tensor) -> tuple[float, float, float]:
    """max abs, max rel, PSNR. An inf or NaN of the reference that the candidate reproduces at
    the same place is equal (it is what the original computes); the rest is compared."""
    ref, cand = ref.detach().double(), cand.detach().double()
    same_odd = ~torch.isfinite(ref) & ((ref == cand) | (ref.isnan() & cand.isnan()))
    if same_odd.any():
        ref, cand = ref[~same_odd], cand[~same_odd]
    diff = (ref - cand).abs()
    peak = ref.abs().max().item() if ref.numel() else 0.0
    max_abs = diff.max().item() if diff.numel() else 0.0
    if math.isnan(max_abs):
        return math.nan, math.inf, -math.inf
    rms = diff.pow(2).mean().sqrt().item() if diff.numel() else 0.0
    max_rel = max_abs / peak if peak > 0 else (0.0 if max_abs == 0 else math.inf)
    if not math.isfinite(rms):
        return max_abs, max_rel, -math.inf
    psnr = math.inf if rms == 0 else (20 * math.log10(peak / rms) if peak > 0 else -math.inf)
    return max_abs, max_rel, psnr


def _plain(out):
    """Dataclass outputs as dicts of their fields, all the way down (diffusers registers its
    ``BaseOutput`` with pytree but without key paths)."""
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return {f.name: _plain(getattr(out, f.name)) for f in dataclasses.fields(out)}
    if isinstance(out, dict):
        return {k: _plain(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [_plain(v) for v in out]
    return out


def _leaves(out) -> dict[str, torch.Tensor]:
    try:
        flat, _ = pytree.tree_flatten_with_path(out)
    except ValueError:  # a registered type without key paths
        flat, _ = pytree.tree_flatten_with_path(_plain(out))
    return {pytree.keystr(path) or "output": leaf for path, leaf in flat if isinstance(leaf, torch.Tensor)}


def verify(reference: torch.nn.Module, candidate: torch.nn.Module, example_inputs: Any,
           draws: int = 3) -> EquivalenceReport:
    """Compare ``candidate`` with ``reference`` on the example inputs and random draws (an
    exported package: ``ane_rewrite.verify`` routes it to ``runtime/verify.py``)."""
    split_inputs(example_inputs)
    if draws < 1:
        raise InputError("draws must be at least 1")
    report = EquivalenceReport(draws=draws)
    worst: dict[str, OutputError] = {}
    failing_draw = None
    options = models.call_options(reference, example_inputs)
    for i in range(draws):
        inputs = models.draw_inputs(example_inputs, i)
        with torch.no_grad():
            ref = _leaves(call(reference, inputs, **options))
            cand = _leaves(call(candidate, inputs))
        if set(ref) != set(cand):
            report.problems.append(f"outputs differ: reference has {sorted(ref)}, candidate {sorted(cand)}")
            break
        for name, r in ref.items():
            c = cand[name]
            if r.shape != c.shape:
                report.problems.append(f"{name}: shape {tuple(c.shape)} instead of {tuple(r.shape)}")
                continue
            e = OutputError(name, *_errors(r, c))
            old = worst.get(name)
            if old is None or e.psnr < old.psnr or e.max_rel > old.max_rel or math.isnan(e.max_abs):
                worst[name] = e
            if failing_draw is None and not (e.psnr >= PSNR_BAR and e.max_rel <= REL_BAR):
                failing_draw = inputs
    report.outputs = list(worst.values())
    if not report.ok and isinstance(candidate, GraphModule):
        report.divergence = first_divergence(reference, candidate,
                                             failing_draw if failing_draw is not None else example_inputs)
    return report


class _Recorder(Interpreter):
    def __init__(self, gm: GraphModule):
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n):
        out = super().run_node(n)
        self.values[n.name] = out
        return out


def _node_values(gm: GraphModule, inputs: Any) -> dict[str, Any]:
    args, kwargs = split_inputs(inputs)
    flat = fx_pytree.tree_flatten_spec((args, kwargs), gm._in_spec)
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(*flat)
    return rec.values


def _counterpart(node, values: dict) -> tuple[str | None, Any]:
    """The reference node this candidate node stands for, and the candidate value to compare."""
    if "ane_channels_first_of" in node.meta:
        origin, r = node.meta["ane_channels_first_of"]
        value = values.get(node.name)
        return origin, channels_last(value, r) if isinstance(value, torch.Tensor) and value.dim() == 4 else None
    origin = node.meta.get("ane_origin", None if "ane_rule" in node.meta else node.name)
    return origin, values.get(node.name)


def first_divergence(reference: torch.nn.Module, candidate: GraphModule, inputs: Any) -> str | None:
    """The first node of ``candidate`` whose value departs from its reference counterpart.

    Counterparts: an unchanged node has the same name; a node that replaced one carries its
    name in ``meta["ane_origin"]``; a value inside a channels-first region names the node it
    holds in ``meta["ane_channels_first_of"]`` and is compared after converting it back."""
    ref_gm = reference if isinstance(reference, GraphModule) else capture(reference, inputs)
    ref_vals = _node_values(ref_gm, inputs)
    cand_vals = _node_values(candidate, inputs)
    for node in candidate.graph.nodes:
        if node.op != "call_function":
            continue
        origin, c = _counterpart(node, cand_vals)
        r = ref_vals.get(origin)
        if not (isinstance(r, torch.Tensor) and isinstance(c, torch.Tensor)) or r.shape != c.shape:
            continue
        if not r.is_floating_point():
            if not torch.equal(r, c):
                return f"{node.name} (from {origin}) differs"
            continue
        max_abs, max_rel, psnr = _errors(r, c)
        if math.isnan(max_abs) or max_rel > REL_BAR:
            rule = node.meta.get("ane_rule")
            by = f", made by rule {rule}" if rule else ""
            return (f"{node.name} (counterpart of {origin}{by}): max abs {max_abs:.3g}, "
                    f"max rel {max_rel:.3g}, PSNR {psnr:.1f} dB")
    return None
