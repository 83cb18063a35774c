"""One verdict on saved packages: each executed here (``ane_rewrite.runtime``) in fp32 and
fp16 against the PyTorch model, its fp16 hazards found, and the bars a rewritten package must
meet to ship — the same for the command line, the several-lengths command, the zoo and the
benchmarks.

    execute_packages(model, rewritten, example, {"baseline": path, "rewritten": path, …})
        → {side: {"fp32": EquivalenceReport, "fp16": EquivalenceReport, "hazards": HazardReport}}
    shipped_ok(executed) → the rewritten package meets its fp32 bar (60 dB) and its fp16 PSNR is
        within FP16_MARGIN_DB of the baseline package's (the stock conversion's own fp16 loss)
"""
from __future__ import annotations

from typing import Any

from .runtime import load
from .runtime.hazards import fp16_hazards
from .runtime.verify import verify_packages

FP16_MARGIN_DB = 1.0  # a rewritten package may lose at most this much fp16 PSNR against the baseline's


def execute_packages(model, rewritten, example: Any, packages: dict, hazards: bool = True,
                     draws: int | None = None) -> dict:
    """Every package (a path or a loaded program; ``"baseline"`` is the model as is, any other
    side the rewritten graph ``rewritten``, which locates a divergence) executed in fp32 and
    fp16 on the same draws, with its fp16 hazards unless ``hazards=False``."""
    exes = {side: load(package) for side, package in packages.items()}
    results = verify_packages(model, {side: (exe, None if side == "baseline" else rewritten)
                                      for side, exe in exes.items()}, example, draws=draws)
    if hazards:
        for side, exe in exes.items():
            results[side]["hazards"] = fp16_hazards(exe, example)
    return results


def fp16_gap_db(executed: dict) -> float:
    """The rewritten package's fp16 PSNR less the baseline package's."""
    return executed["rewritten"]["fp16"].psnr - executed["baseline"]["fp16"].psnr


def shipped_ok(executed: dict) -> bool:
    return executed["rewritten"]["fp32"].ok and fp16_gap_db(executed) >= -FP16_MARGIN_DB
