"""The safe-mode guard: does a graph module still compute what it was captured as?

``Guard(reference, example_inputs)`` runs ``reference`` (the captured graph before any pass)
once on its inputs: the example inputs and ``draws - 1`` fresh draws (``models.draw_inputs``:
new values, and a new right-padding pattern for every 0/1 mask). ``guard(gm)`` runs ``gm`` on
the same inputs and answers None when every output of every input is within the bar — fp32,
max relative error ≤ 1e-4 and PSNR ≥ 60 dB (``verify``'s bar), an inf or NaN of the
original's reproduced where it is — or else says which output
missed it, by how much, and the first node of ``gm`` whose value departs from the reference.
The pipeline (``rewrite/pipeline.py``) rolls back the pass that made it so.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.fx import GraphModule

from ..frontend import models
from ..frontend.capture import call
from .verify import PSNR_BAR, REL_BAR, _errors, _leaves, first_divergence


class Guard:
    def __init__(self, reference: GraphModule, example_inputs: Any, draws: int = 2):
        self.reference = reference
        self.inputs = [models.draw_inputs(example_inputs, i) for i in range(draws)]
        with torch.no_grad():
            self.expected = [_leaves(call(reference, x)) for x in self.inputs]

    def __call__(self, gm: GraphModule) -> str | None:
        for i, (x, expected) in enumerate(zip(self.inputs, self.expected)):
            with torch.no_grad():
                got = _leaves(call(gm, x))
            if set(got) != set(expected):
                return f"the outputs are {sorted(got)}, not {sorted(expected)}"
            for name, ref in expected.items():
                problem = _miss(ref, got[name])
                if problem is None:
                    continue
                where = first_divergence(self.reference, gm, x)
                what = "the example inputs" if i == 0 else f"draw {i}"
                return f"{name} on {what}: {problem}" + (f"; first divergence {where}" if where else "")
        return None


def _miss(ref: torch.Tensor, got: torch.Tensor) -> str | None:
    if ref.shape != got.shape:
        return f"shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
    if not ref.is_floating_point():
        return None if torch.equal(ref, got) else "integer values differ"
    odd = ~torch.isfinite(ref)  # inf/NaN the original computes itself: the rewrite must match them
    if odd.any():
        if not torch.equal(ref[odd].nan_to_num(0.0), got[odd].nan_to_num(0.0)) or \
                not torch.equal(ref[odd].isnan(), got[odd].isnan()):
            return "the original's inf/NaN values are not reproduced"
        ref, got = ref[~odd], got[~odd]
    max_abs, max_rel, psnr = _errors(ref, got)
    if math.isnan(max_abs) or max_rel > REL_BAR or psnr < PSNR_BAR:
        return f"PSNR {psnr:.1f} dB, max rel err {max_rel:.3g} (bar: {PSNR_BAR:.0f} dB, {REL_BAR:g})"
    return None
