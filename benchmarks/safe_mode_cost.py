"""What safe mode costs: ``optimize`` with it (the default) against ``optimize(safe=False)``.

    python benchmarks/safe_mode_cost.py [SOURCE ...] [--seq-len 128] [--runs 3] [--out benchmarks/results]

Sources as the CLI takes them (default: DistilBERT with an SST-2 head, T5's encoder and
Swin-T, at their default sizes). Per source: the median of ``runs`` wall times of each mode (a
run is capture + passes, plus the guard's checks in safe mode), their ratio (the goal: ≤ 1.5×),
and the passes safe mode rolled back (none, on these). Writes ``safe_mode_cost.json`` and
``safe_mode_cost.md``; exit status 1 when a ratio misses the goal.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

SOURCES = ["hf:DistilBertForSequenceClassification", "hf:T5EncoderModel", "timm:swin_tiny_patch4_window7_224"]


def _median_s(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    import ane_rewrite
    from ane_rewrite.frontend import models

    rows = []
    for source in args.sources or SOURCES:
        model = models.load(source)
        example = models.example_inputs(model, seq_len=args.seq_len)
        unsafe_s, _ = _median_s(lambda: ane_rewrite.optimize(model, example, safe=False), args.runs)
        safe_s, fast = _median_s(lambda: ane_rewrite.optimize(model, example), args.runs)
        rows.append({"source": source, "unsafe_s": round(unsafe_s, 2), "safe_s": round(safe_s, 2),
                     "ratio": round(safe_s / unsafe_s, 2),
                     "rolled_back": [r.summary() for r in fast.ane_report.rolled_back]})
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/safe_mode_cost.py " + " ".join(argv or [])).strip()
    lines = ["# Safe mode's cost\n", f"`{command}` ({platform.machine()}, {torch.get_num_threads()} torch threads; "
             f"seq {args.seq_len}; medians of {args.runs} runs)\n",
             "| model | optimize(safe=False) s | optimize() s | ÷ | rolled back |", "|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['unsafe_s']:.2f} | {r['safe_s']:.2f} | {r['ratio']:.2f} | "
              f"{'; '.join(r['rolled_back']) or 'none'} |" for r in rows]
    (out / "safe_mode_cost.json").write_text(json.dumps({"seq_len": args.seq_len, "runs": args.runs, "rows": rows},
                                                         indent=2) + "\n")
    (out / "safe_mode_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["ratio"] <= 1.5 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
