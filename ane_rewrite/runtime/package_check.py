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
from dataclasses import dataclass

import torch

from . import load
from .hazards import HazardReport, fp16_hazards

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


def _psnr(refs: list[torch.Tensor], outs: list[torch.Tensor]) -> float:
    ref = torch.cat([r.double().flatten() for r in refs])
    diff = torch.cat([(r.double() - o.double().reshape(r.shape)).flatten() for r, o in zip(refs, outs)])
    finite = torch.isfinite(diff)
    if not bool(finite.all()):
        return -math.inf
    rms = float(diff.square().mean().sqrt())
    return math.inf if rms == 0 else 20 * math.log10(float(ref.abs().max()) / rms)


def check_package(path, function: str | None = None, draws: int = 4, against=None) -> PackageCheck:
    exe = load(path, function)
    other = load(against, function) if against is not None else None
    ref32, out16, ref_other = [], [], []
    for i in range(draws):
        inputs = draw_package_inputs(exe, i)
        out32 = list(exe.run(inputs, "fp32").values())
        ref32 += out32
        out16 += list(exe.run(inputs, "fp16").values())
        if other is not None:
            ref_other += list(other.run(inputs, "fp32").values())
    hazards = fp16_hazards(exe, draw_package_inputs(exe, 0))
    return PackageCheck(draws, _psnr(ref32, out16), hazards, _psnr(ref_other, ref32) if other is not None else None)
