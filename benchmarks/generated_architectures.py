"""Generated architectures through optimize: how many come back non-equivalent (the goal: 0).

    python benchmarks/generated_architectures.py [--count 1000] [--seed 0] [--out benchmarks/results]

Specs are drawn by the hypothesis strategies of ``tests/generated/strategies.py`` (depth,
width — several not divisible by 8 —, heads and kv heads, norm kind and place, activation and
gating, learned/rotary (two layouts)/ALiBi/relative-bias positions, padding/causal/sliding/no
masks, windowed vision blocks with conv stems, parallel residuals, shared weights, sequence 1 to
1024). Each: built with random weights, ``optimize`` in safe mode with every attention lowered
per head, ``verify`` over 5 draws (three more than the guard saw). Reported: equivalent /
non-equivalent / errors, the passes rolled back with their reasons (a rollback is a failure:
safe mode hid a pass that broke the model), and the declined patterns by reason. Writes
``generated_architectures.json`` and ``generated_architectures.md``; exit status 1 on any
non-equivalent model, error or rollback.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _reason(text: str) -> str:
    """A declined reason without its node names and figures, to count alike ones together."""
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'|\b\w+_\d+\b", "…", text))[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    from hypothesis import HealthCheck, given, seed, settings

    from tests.generated.strategies import architectures, check

    outcomes = []
    start = time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(architectures())
    def run(spec):
        outcomes.append(check(spec, seed=len(outcomes)))
        if len(outcomes) % 50 == 0:
            print(f"{len(outcomes)} architectures, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    run()
    bad = [o for o in outcomes if (not o.equivalent or o.rolled_back) and o.error is None]
    errors = [o for o in outcomes if o.error is not None]
    rolled = Counter(r for o in outcomes for r in (_reason(x) for x in o.rolled_back))
    declined = Counter(_reason(d) for o in outcomes for d in set(o.declined))
    summary = {"count": len(outcomes), "seed": args.seed, "equivalent": sum(o.equivalent for o in outcomes),
               "non_equivalent": sum(not o.equivalent for o in bad), "errors": len(errors), "minutes": round((time.perf_counter() - start) / 60, 1),
               "with_rollbacks": sum(bool(o.rolled_back) for o in outcomes),
               "min_psnr": round(min((o.psnr for o in outcomes if o.equivalent), default=float("nan")), 1),
               "failures": [asdict(o) for o in bad + errors], "rolled_back": dict(rolled.most_common()),
               "declined": dict(declined.most_common())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/generated_architectures.py " + " ".join(argv or [])).strip()
    lines = ["# Generated architectures through optimize\n", f"`{command}` ({summary['minutes']} min)\n",
             f"- architectures: {summary['count']} (seed {args.seed})",
             f"- equivalent over 5 draws: {summary['equivalent']} (lowest PSNR {summary['min_psnr']} dB)",
             f"- non-equivalent: {summary['non_equivalent']}; errors: {summary['errors']}",
             f"- with a pass rolled back by safe mode (failures): {summary['with_rollbacks']}", "",
             "| declined pattern (architectures) | count |", "|---|---|"]
    lines += [f"| {r} | {n} |" for r, n in declined.most_common(25)]
    if rolled:
        lines += ["", "| rolled back | count |", "|---|---|"] + [f"| {r} | {n} |" for r, n in rolled.most_common(25)]
    for o in bad + errors:
        lines.append(f"\nFAILED {o.spec}: {o.error or '; '.join(o.rolled_back) or f'PSNR {o.psnr:.1f} dB'}")
    (out / "generated_architectures.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "generated_architectures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if not bad and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
