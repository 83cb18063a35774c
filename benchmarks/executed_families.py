"""Every family of the two attention issues' test suites (tests/decoders.py, tests/attention_families.py),
baseline and rewritten exported and both packages executed against the PyTorch model.

    python benchmarks/executed_families.py [--out benchmarks/results]

Per family: the rewritten package's fp32 PSNR (bar 60 dB) and both packages' fp16 PSNR (the
rewritten may be at most 1 dB below the baseline: the command line's verdict,
``ane_rewrite/compare.py``), pooled over draws (``runtime/verify.py``).
Writes ``executed_families.json`` and ``executed_families.md``; exit status 1 when a row misses.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _families():
    sys.path.insert(0, str(ROOT))
    from tests import attention_families, decoders
    from ane_rewrite.frontend import models

    for name in decoders.FAMILIES:
        def build(name=name):
            model = decoders.build(name)
            return model, models.example_inputs(model, seq_len=32)  # as tests/test_decoders.py
        yield f"decoders/{name}", build
    for name in attention_families.FAMILIES:
        def build(name=name):
            model = attention_families.build(name)
            return model, attention_families.example(name, model)
        yield f"attention/{name}", build


def run_one(build, workdir: Path) -> dict:
    import ane_rewrite
    from ane_rewrite.compare import execute_packages, shipped_ok

    model, example = build()
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)  # as the tests run them
    for side, m in (("baseline", model), ("rewritten", fast)):
        ane_rewrite.export(m, example, workdir / f"{side}.mlpackage", progress=False)
    reports = execute_packages(model, fast, example, {side: workdir / f"{side}.mlpackage"
                                                      for side in ("baseline", "rewritten")}, hazards=False)
    row = {side: {p: round(r.psnr, 1) for p, r in reps.items()} for side, reps in reports.items()}
    row["draws"] = reports["rewritten"]["fp32"].draws
    row["ok"] = shipped_ok(reports)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows, start = {}, time.perf_counter()
    for name, build in _families():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                rows[name] = run_one(build, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - recorded with its cause
                rows[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-1500:]}
        print(name, rows[name] if "error" not in rows[name] else rows[name]["error"], flush=True)
    total = time.perf_counter() - start
    ok = [r for r in rows.values() if "error" not in r]
    lines = ["# Issue 12/13 families: packages executed against PyTorch\n",
             f"`python benchmarks/executed_families.py` ({total / 60:.1f} min): {sum(r['ok'] for r in rows.values())}/"
             f"{len(rows)} rows hold; rewritten fp32 min {min(r['rewritten']['fp32'] for r in ok):.1f} dB; rewritten "
             f"fp16 − baseline fp16 min {min(r['rewritten']['fp16'] - r['baseline']['fp16'] for r in ok):+.1f} dB\n",
             "| family | draws | fp32 dB base / new | fp16 dB base / new | holds |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | – | failed: {r['error'][:80]} | | no |")
            continue
        lines.append(f"| {name} | {r['draws']} | {r['baseline']['fp32']} / {r['rewritten']['fp32']} "
                     f"| {r['baseline']['fp16']} / {r['rewritten']['fp16']} | {'yes' if r['ok'] else 'NO'} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "executed_families.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "executed_families.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["ok"] for r in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
