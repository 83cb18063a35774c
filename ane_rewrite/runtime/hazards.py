"""The fp16 hazard report: which ops of a saved ML Program misbehave in fp16 on given inputs.

The program runs twice in lockstep — fp32 and fp16 (see ``interpreter.py``), op by op — and
every value the program declares fp16 is compared with its fp32 twin:

    overflow    finite in fp32, ±inf in fp16 (|value| beyond 65504)
    nan         a number in fp32, NaN in fp16
    underflow   non-zero in fp32 but below fp16's range (|value| < 2⁻²⁵ ≈ 3e-8), 0 in fp16
                (a zero from cancellation — a − b with a ≈ b — is rounding, not underflow)

A hazard is an *origin* when none of the op's inputs carried that hazard already (an overflow
then passed along by later ops is reported once, where it starts). Each is reported with the
op, its position and type, how many elements, and the fp32 value range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .interpreter import bind, run_step

FP16_MAX = 65504.0


@dataclass
class Hazard:
    kind: str        # overflow | nan | underflow
    location: str    # the op (see Step.location)
    value: str       # the MIL value
    count: int
    total: int
    fp32_min: float
    fp32_max: float
    origin: bool

    def __str__(self) -> str:
        where = "starts at" if self.origin else "carried by"
        return (f"{self.kind}: {where} {self.location}: {self.count} of {self.total} "
                f"elements; fp32 range [{self.fp32_min:.3g}, {self.fp32_max:.3g}]")


@dataclass
class HazardReport:
    hazards: list[Hazard] = field(default_factory=list)
    values_checked: int = 0

    @property
    def origins(self) -> list[Hazard]:
        return [h for h in self.hazards if h.origin]

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.origins:
            out[h.kind] = out.get(h.kind, 0) + 1
        return out

    def __str__(self) -> str:
        if not self.hazards:
            return f"no fp16 hazard in {self.values_checked} fp16 values"
        lines = [f"fp16 hazards ({len(self.origins)} origins in {self.values_checked} fp16 values): {self.kinds()}"]
        lines += [f"  {h}" for h in self.origins]
        return "\n".join(lines)


def _kinds(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"overflow": torch.isfinite(a) & torch.isinf(b),
            "nan": ~torch.isnan(a) & torch.isnan(b),
            "underflow": (a != 0) & (a.to(torch.float16) == 0) & (b == 0)}


def _input_vars(step) -> list[str]:
    names = []
    for kind, value in step.args.values():
        if kind == "var":
            names.append(value)
        elif kind == "list":
            names += [v for k, v in value if k == "var"]
    return names


def fp16_hazards(model_or_path, inputs: Any) -> HazardReport:
    """Run the program in fp32 and fp16 side by side and report the fp16 hazards."""
    from . import load

    exe = load(model_or_path)
    compiled = exe.compiled
    bound = exe.bind_inputs(inputs)
    env32, env16 = bind(compiled, bound, "fp32"), bind(compiled, bound, "fp16")
    carried: dict[str, set[str]] = {}  # value → hazard kinds it carries in the fp16 run
    report = HazardReport()
    for step in compiled.steps:
        inputs_carry = set()
        for name in _input_vars(step):
            inputs_carry |= carried.get(name, set())
        v32, v16 = run_step(step, env32, "fp32"), run_step(step, env16, "fp16")
        for name, out, a, b in zip(step.outputs, step.out, v32, v16):
            if out.dtype != "fp16":
                continue
            report.values_checked += 1
            kinds = set()
            for kind, mask in _kinds(a, b).items():
                count = int(mask.sum())
                if not count:
                    continue
                kinds.add(kind)
                finite = a[torch.isfinite(a)]
                report.hazards.append(Hazard(kind, step.location, name, count, a.numel(),
                                             float(finite.min()) if finite.numel() else float("nan"),
                                             float(finite.max()) if finite.numel() else float("nan"),
                                             kind not in inputs_carry))
            carried[name] = kinds | (inputs_carry & {"overflow", "nan"})
    return report
