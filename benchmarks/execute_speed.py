"""How fast the interpreter runs a saved package, against the PyTorch model on the same inputs.

    python benchmarks/execute_speed.py [SOURCE] [--seq-len 128] [--runs 10] [--out benchmarks/results]

SOURCE as the CLI takes it (default: DistilBERT with an SST-2 head, the CLI's default model).
Both packages (baseline and rewritten) are exported, loaded once (load time reported apart),
then executed ``runs`` times in fp32 and in fp16; the PyTorch model (eager, inference mode) runs
``runs`` times on the same inputs. Medians in ms, and the ratio interpreter ÷ PyTorch (the goal:
≤ 3×). Writes ``execute_speed.json`` and ``execute_speed.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def _median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    import ane_rewrite
    from ane_rewrite.frontend import models
    from ane_rewrite.frontend.capture import call
    from ane_rewrite.runtime import load

    source = args.source or models.DEFAULT_SOURCE
    model = models.load(source)
    example = models.example_inputs(model, seq_len=args.seq_len)
    fast = ane_rewrite.optimize(model, example)
    with torch.inference_mode():
        torch_ms = _median_ms(lambda: call(model, example), args.runs)
    rows = {"source": source, "seq_len": args.seq_len, "runs": args.runs, "pytorch_ms": round(torch_ms, 2),
            "torch_threads": torch.get_num_threads(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for side, m in (("baseline", model), ("rewritten", fast)):
            path = Path(tmp) / f"{side}.mlpackage"
            ane_rewrite.export(m, example, path, progress=False)
            t = time.perf_counter()
            exe = load(path)
            rows[f"{side}_load_s"] = round(time.perf_counter() - t, 2)
            for precision in ("fp32", "fp16"):
                ms = _median_ms(lambda: exe.run(example, precision), args.runs)
                rows[f"{side}_{precision}_ms"] = round(ms, 2)
                rows[f"{side}_{precision}_ratio"] = round(ms / torch_ms, 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/execute_speed.py " + " ".join(argv or [])
    lines = ["# Executing a saved package on Linux vs PyTorch CPU\n", f"`{command.strip()}` ({rows['machine']}, "
             f"{rows['torch_threads']} torch threads; {source}, seq {args.seq_len}; medians of {args.runs} runs)\n",
             "| | ms | ÷ PyTorch |", "|---|---|---|", f"| PyTorch eager (inference mode) | {torch_ms:.1f} | 1.00 |"]
    for side in ("baseline", "rewritten"):
        for precision in ("fp32", "fp16"):
            lines.append(f"| {side} package, executed {precision} | {rows[f'{side}_{precision}_ms']:.1f} "
                         f"| {rows[f'{side}_{precision}_ratio']:.2f} |")
    lines.append(f"\nLoad and compile once: baseline {rows['baseline_load_s']} s, rewritten {rows['rewritten_load_s']} s.")
    (out / "execute_speed.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "execute_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    worst = max(rows[f"{s}_{p}_ratio"] for s in ("baseline", "rewritten") for p in ("fp32", "fp16"))
    return 0 if worst <= 3.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
