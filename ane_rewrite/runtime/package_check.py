"""check_package(path): a saved package executed on its own — no PyTorch model at hand.

Inputs are drawn from the program's own input types (``draw_package_inputs``): floats standard
normal; an integer input that indexes a ``gather`` (through casts and reshapes) uniform below
the size of the axis it indexes (token ids stay in the vocabulary); any other integer input
0 or 1 (a mask). Each draw runs in fp32 and fp16: the fp16 PSNR is against the same program's
fp32 outputs (what rounding to fp16 costs), and the fp16 hazards are those of the first draw
(``hazards.fp16_hazards``). ``against``: another package with the same inputs and outputs (the
baseline) run in fp32 on the same draws — the PSNR of this package's outputs against its
outputs says whether the two artefacts compute the same function.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch

from . import load
from .hazards import HazardReport, fp16_hazards
from .verify import _Pooled

PASS_THROUGH = ("cast", "reshape", "expand_dims", "squeeze", "identity")
FLOAT_DTYPES = ("fp16", "fp32", "fp64")


def index_bounds(compiled) -> dict[str, int]:
    """``{integer input: bound}``: the smallest axis size a ``gather`` indexes with it."""
    origin = {name: name for name, out in compiled.inputs.items() if out.dtype not in FLOAT_DTYPES}
    bounds: dict[str, int] = {}
    for step in compiled.steps:
        sources = {origin[a[1]] for a in step.args.values() if isinstance(a, tuple) and a[0] == "var" and a[1] in origin}
        if step.type in PASS_THROUGH and sources:
            for out in step.outputs:
                origin[out] = next(iter(sources))
        if step.type == "gather" and step.args.get("indices", (None, None))[1] in origin:
            x, axis = step.args["x"], step.args.get("axis", ("const", 0))
            shape = tuple(x[1].shape) if x[0] == "const" else compiled.declared[x[1]].shape
            size = shape[int(axis[1]) if axis[0] == "const" else 0]
            name = origin[step.args["indices"][1]]
            bounds[name] = min(bounds.get(name, size), size)
    return bounds


def draw_package_inputs(exe, index: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(2000 + index)
    bounds = index_bounds(exe.compiled)
    inputs = {}
    for name in exe.input_names:
        out = exe.compiled.inputs[name]
        if out.dtype in FLOAT_DTYPES:
            inputs[name] = torch.randn(out.shape, generator=gen)
        else:
            inputs[name] = torch.randint(0, bounds.get(name, 2), out.shape, generator=gen, dtype=torch.int32)
    return inputs


@dataclass
class PackageCheck:
    draws: int
    fp16_psnr: float                  # fp16 outputs against the same program's fp32 outputs
    hazards: HazardReport
    against_psnr: float | None = None  # fp32 outputs against the other package's fp32 outputs


def _psnr(pooled: dict[str, _Pooled]) -> float:
    """The lowest PSNR over the outputs, each pooled over the draws (as ``verify`` reports it)."""
    return min((p.result(name).psnr for name, p in pooled.items()), default=math.inf)


def check_package(path, function: str | None = None, draws: int = 4, against=None) -> PackageCheck:
    exe = load(path, function)
    other = load(against, function) if against is not None else None
    fp16, versus = defaultdict(_Pooled), defaultdict(_Pooled)
    for i in range(draws):
        inputs = draw_package_inputs(exe, i)
        out32, out16 = exe.run(inputs, "fp32"), exe.run(inputs, "fp16")
        for name, value in out32.items():
            fp16[name].add(value, out16[name])
        if other is not None:  # outputs in the same order: the same model's, converted twice
            for (name, value), theirs in zip(out32.items(), other.run(inputs, "fp32").values()):
                versus[name].add(theirs, value.reshape(theirs.shape))
    hazards = fp16_hazards(exe, draw_package_inputs(exe, 0))
    return PackageCheck(draws, _psnr(fp16), hazards, _psnr(versus) if other is not None else None)
