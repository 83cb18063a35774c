"""The safe-mode guard: does a graph module still compute what it was captured as?

``Guard(reference, example_inputs)`` runs ``reference`` (the captured graph before any pass)
once on its inputs: the example inputs and a fresh draw (``models.draw_inputs`` 2: new values;
for a 0/1 mask, the first row left-padded — a causal model's padded queries keep no key — and
the next right-padded, alternately). ``guard(gm)`` runs ``gm`` on
the same inputs and answers None when every output of every input is within the bar — fp32,
max relative error ≤ 1e-4 and PSNR ≥ 60 dB (``verify``'s bar; a bf16 or fp16 output: PSNR ≥
40 or 50 dB, that type's rounding noise), an inf or NaN of the original's reproduced where it
is — or else says which output
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
    def __init__(self, reference: GraphModule, example_inputs: Any, draws: tuple[int, ...] = (0, 2)):
        self.reference, self.draws = reference, draws
        self.inputs = [models.draw_inputs(example_inputs, i) for i in draws]
        with torch.inference_mode():
            self.expected = [_leaves(call(reference, x)) for x in self.inputs]

    def __call__(self, gm: GraphModule) -> str | None:
        for i, x, expected in zip(self.draws, self.inputs, self.expected):
            with torch.inference_mode():
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


# A model computing in a 16-bit float type: a rewrite reorders its roundings, so the outputs
# differ by that type's noise (bf16: 8 significant bits, fp16: 11); its bar is PSNR only.
LOW_PRECISION_PSNR = {torch.bfloat16: 40.0, torch.float16: 50.0}


def _miss(ref: torch.Tensor, got: torch.Tensor) -> str | None:
    if ref.shape != got.shape:
        return f"shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
    if not ref.is_floating_point():
        return None if torch.equal(ref, got) else "integer values differ"
    max_abs, max_rel, psnr = _errors(ref, got)
    if not math.isfinite(max_abs):
        return "an inf/NaN value that the original does not compute there"
    psnr_bar, rel_bar = LOW_PRECISION_PSNR.get(ref.dtype, PSNR_BAR), None if ref.dtype in LOW_PRECISION_PSNR else REL_BAR
    if (rel_bar is not None and max_rel > rel_bar) or psnr < psnr_bar:
        bar = f"{psnr_bar:.0f} dB" + (f", {rel_bar:g}" if rel_bar is not None else f" ({ref.dtype})")
        return f"PSNR {psnr:.1f} dB, max rel err {max_rel:.3g} (bar: {bar})"
    return None
