"""The zoo's plots (``compare_zoo.py``): estimated ANE latency and measured CPU latency, baseline beside rewritten."""
from __future__ import annotations

from pathlib import Path


def plot(rows: list[dict], out: Path, chip: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r and "baseline" in r]  # (a model as is may not convert)
    names = [r["model"] for r in ok]
    paths = []
    for key, title, fname in (
            ("est", f"Estimated ANE latency on {chip} (analytic estimate, not measured)", "ane_latency_estimate.png"),
            ("cpu", "PyTorch CPU latency on this machine (measured)", "cpu_latency.png")):
        if key == "cpu" and any(r["baseline"]["cpu_ms"] is None for r in ok):
            continue  # --no-execute: nothing was timed
        base = [r["baseline"]["estimates"][chip]["latency_ms"] if key == "est" else r["baseline"]["cpu_ms"] for r in ok]
        new = [r["rewritten"]["estimates"][chip]["latency_ms"] if key == "est" else r["rewritten"]["cpu_ms"] for r in ok]
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(ok) + 2), 4.5))
        xs = range(len(ok))
        ax.bar([x - 0.2 for x in xs], base, 0.4, label="baseline (model as is)")
        ax.bar([x + 0.2 for x in xs], new, 0.4, label="rewritten (ane_rewrite.optimize)")
        ax.set_xticks(list(xs), names, rotation=40, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        paths.append(out / fname)
    return paths
