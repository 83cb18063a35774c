"""``ane-rewrite optimize --json``: what the tables print, as one JSON object (stable keys).

    schema          "ane-rewrite.optimize/1"
    source          the model source; inputs: {name: shape}
    passes          [{name, counts: {rule: n}, declined: [{node, rule, reason}], rolled_back: reason | null}]
    equivalence     {ok, psnr_db, max_rel, draws, divergence}           (the rewrite against the model, PyTorch)
    programs        {baseline | rewritten: {ops, linear, conv_4d, transpose, reshape, softmax, einsum,
                     gather, max_rank, findings: {rule: n}, estimates: {chip: {latency_ms, …}}}}
    executed        null (--no-verify) or {baseline | rewritten: {fp32_psnr_db, fp16_psnr_db, draws,
                     hazards}, fp16_gap_db, ok}                         (the saved packages, executed here)
    times_s         {optimize, export_baseline, export_rewritten}
    compressed      null, or {kind, weights_mib, rewritten_weights_mib, fp32_psnr_db, fp16_psnr_db}
                    (--compress: the rewritten package's weights compressed, executed here unless --no-verify)
    packages        {baseline, rewritten[, compressed]}: paths
    exit_code       0 ok; 1 not equivalent or the rewritten package misses its bars; (2: an error, no JSON)

A non-finite figure (an infinite PSNR of identical outputs) is null.
"""
from __future__ import annotations

import json
import math

SCHEMA = "ane-rewrite.optimize/1"
PROGRAM_KEYS = ("ops", "linear", "conv_4d", "transpose", "reshape", "softmax", "einsum", "gather", "max_rank")


def _num(value):
    return value if isinstance(value, (int, str)) or value is None or math.isfinite(value) else None


def _program(summary: dict, analysis) -> dict:
    return {**{k: summary[k] for k in PROGRAM_KEYS}, "findings": dict(analysis.by_rule()),
            "estimates": {chip: {k: _num(v) for k, v in e.items() if k != "chip"} for chip, e in analysis.estimates.items()}}


def _side(a: dict) -> dict:
    return {"fp32_psnr_db": _num(round(a["fp32"].psnr, 2)), "fp16_psnr_db": _num(round(a["fp16"].psnr, 2)),
            "draws": a["fp32"].draws, "hazards": len(a["hazards"].origins)}


def _compressed(kind: str | None, packages: dict, artefacts: dict | None) -> dict | None:
    if kind is None:
        return None
    from .coreml.compress import weights_bytes

    out = {"kind": kind, "weights_mib": round(weights_bytes(packages["compressed"]) / 2**20, 2),
           "rewritten_weights_mib": round(weights_bytes(packages["rewritten"]) / 2**20, 2),
           "fp32_psnr_db": None, "fp16_psnr_db": None}
    if artefacts is not None:
        out.update({k: _side(artefacts["compressed"])[k] for k in ("fp32_psnr_db", "fp16_psnr_db")})
    return out


def _executed(artefacts: dict | None, ok: bool) -> dict | None:
    if artefacts is None:
        return None
    sides = {side: _side(artefacts[side]) for side in ("baseline", "rewritten")}
    gap = artefacts["rewritten"]["fp16"].psnr - artefacts["baseline"]["fp16"].psnr
    return {**sides, "fp16_gap_db": _num(round(gap, 2)) if not math.isnan(gap) else None, "ok": ok}


def optimize_json(source: str, example, rewritten, report, summaries: dict, analyses: dict, artefacts: dict | None,
                  shipped_ok: bool, times: dict, packages: dict, exit_code: int, compressed: str | None = None) -> str:
    return json.dumps(optimize_object(source, example, rewritten, report, summaries, analyses, artefacts, shipped_ok,
                                      times, packages, exit_code, compressed), indent=2, allow_nan=False)


def optimize_object(source: str, example, rewritten, report, summaries: dict, analyses: dict, artefacts: dict | None,
                    shipped_ok: bool, times: dict, packages: dict, exit_code: int, compressed: str | None = None) -> dict:
    items = example.items() if isinstance(example, dict) else enumerate(example)
    passes = [{"name": r.name, "counts": dict(r.counts), "rolled_back": r.rolled_back,
               "declined": [{"node": d.node, "rule": d.rule, "reason": d.reason} for d in r.declined]}
              for r in rewritten.ane_report.results]
    result = {
        "schema": SCHEMA, "source": source, "inputs": {str(k): list(v.shape) for k, v in items},
        "passes": passes,
        "equivalence": {"ok": report.ok, "psnr_db": _num(round(report.psnr, 2)), "max_rel": _num(report.max_rel),
                        "draws": report.draws, "divergence": report.divergence},
        "programs": {side: _program(summaries[side], analyses[side]) for side in ("baseline", "rewritten")},
        "executed": _executed(artefacts, shipped_ok),
        "compressed": _compressed(compressed, packages, artefacts),
        "times_s": {k: round(v, 2) for k, v in times.items()},
        "packages": {k: str(v) for k, v in packages.items()},
        "exit_code": exit_code,
    }
    return result
