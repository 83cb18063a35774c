"""Fit the latency model (``ane_rewrite.cost``) on published measurements, and score it where it
was not fitted: leave-one-source-out.

The parameters are those of ``cost.PRIOR``, fitted in log space by least squares on
log(estimate ÷ published) — each source's rows weighted 1/√n, so a source of many rows does not
outvote the others — plus a pull towards each prior (log(value ÷ prior) ÷ log(spread)), which
keeps a parameter the rows say little about where the physics puts it (weight ``PRIOR_WEIGHT``);
an efficiency is at most 1 (no op runs above the chip's peak or reads DRAM above its spec). Nothing is fitted per
model, family or source. Scoring: for each source, the fit on every other source predicts its
rows (held out); the band printed beside every estimate is the 90th percentile of those held-out
errors |estimate ÷ published − 1|.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ane_rewrite import cost, hardware

PARAMS = tuple(cost.PRIOR)
BAND_QUANTILE = 0.9
PRIOR_WEIGHT = 0.3
# Physics bounds the fit: an efficiency is a fraction of a rate the chip has (its peak, its DRAM).
AT_MOST_ONE = tuple(p for p in PARAMS if p.endswith("_efficiency"))  # a parameter moved by its spread costs as much as one source off by 30 % in log
ACCEPT = {"median": 0.25, "worst": 0.60, "rank": 0.9}  # issue 28's bars


def source(row: dict) -> str:
    """A row's source: the repository (or paper) its figure comes from."""
    return row["source"].split(" ")[0]


def predict_ms(rows: list[dict], cols: dict, key, fit: dict) -> np.ndarray:
    return np.array([cost.program_us(cols[key(r)], hardware.CHIPS[r["chip"]], fit)[0] / 1e3 for r in rows])


def fit_params(rows: list[dict], cols: dict, key) -> dict:
    """The parameters that best fit these rows (see the module docstring)."""
    from scipy.optimize import least_squares

    published = np.array([float(r["latency_ms"]) for r in rows])
    counts = defaultdict(int)
    for r in rows:
        counts[source(r)] += 1
    weights = np.array([1 / math.sqrt(counts[source(r)]) for r in rows])
    prior = np.log([cost.PRIOR[p][0] for p in PARAMS])
    spread = np.log([cost.PRIOR[p][1] for p in PARAMS])

    def residuals(x):
        fit = dict(zip(PARAMS, np.exp(x)))
        return np.concatenate([weights * np.log(predict_ms(rows, cols, key, fit) / published),
                               PRIOR_WEIGHT * (x - prior) / spread])

    upper = np.array([0.0 if p in AT_MOST_ONE else np.inf for p in PARAMS])
    best = least_squares(residuals, np.minimum(prior, upper - 1e-3), bounds=(-np.inf, upper), method="trf",
                         x_scale=1.0, max_nfev=400)
    return {p: float(f"{v:.4g}") for p, v in zip(PARAMS, np.exp(best.x))}


def _rank_correlation(a, b) -> float:
    from scipy.stats import spearmanr

    # Spearman's coefficient over n rows is a ratio of integers (0.9 for one adjacent swap in 5):
    # rounded, so float noise (0.8999999999999998) does not decide a bar.
    return round(float(spearmanr(a, b).statistic), 9)


def evaluate(rows: list[dict], cols: dict, key) -> dict:
    """The fit on every row, and every row predicted by a fit that never saw its source."""
    fit_all = fit_params(rows, cols, key)
    in_sample = predict_ms(rows, cols, key, fit_all)
    held = np.zeros(len(rows))
    folds = {}
    for s in sorted({source(r) for r in rows}):
        inside = [i for i, r in enumerate(rows) if source(r) == s]
        fold = fit_params([r for r in rows if source(r) != s], cols, key)
        folds[s] = fold
        held[inside] = predict_ms([rows[i] for i in inside], cols, key, fold)
    published = np.array([float(r["latency_ms"]) for r in rows])
    ratio = held / published
    error = np.abs(ratio - 1)
    band = math.ceil(float(np.quantile(error, BAND_QUANTILE)) * 20) / 20  # up to the next 5 %
    sources = {}
    for s in folds:
        idx = [i for i, r in enumerate(rows) if source(r) == s]
        sources[s] = {"rows": len(idx), "median_error": float(np.median(error[idx])),
                      "rank_correlation": _rank_correlation(held[idx], published[idx]) if len(idx) >= 3 else None}
    pairs = {}
    for i, r in enumerate(rows):
        j = next((j for j, o in enumerate(rows) if r["pair"] and o["pair"] == r["pair"] and o["form"] == "ane_optimized"), None)
        if r["form"] == "as_is" and j is not None:
            pub, est = published[i] / published[j], held[i] / held[j]
            pairs[r["pair"]] = {"published": round(float(pub), 3), "estimated": round(float(est), 3),
                                "error": round(float(abs(est / pub - 1)), 3), "within_band": bool(abs(est / pub - 1) <= band)}
    return {
        "fit": fit_all, "folds": folds, "band": band, "band_quantile": BAND_QUANTILE,
        "median_error": float(np.median(error)), "worst_error": float(error.max()),
        "within_band": int((error <= band).sum()), "rows": [
            {"id": r["id"], "family": r["family"], "chip": r["chip"], "source": source(r), "form": r["form"],
             "published_ms": published[i], "held_out_ms": round(float(held[i]), 3),
             "in_sample_ms": round(float(in_sample[i]), 3), "ratio": round(float(ratio[i]), 3)}
            for i, r in enumerate(rows)],
        "sources": sources, "pairs": pairs,
        "accept": ACCEPT,
    }


def summary(result: dict) -> str:
    ranks = [s["rank_correlation"] for s in result["sources"].values() if s["rank_correlation"] is not None]
    lines = [f"{len(result['rows'])} rows, {len(result['sources'])} sources, leave-one-source-out: median |error| "
             f"{result['median_error'] * 100:.1f} %, worst {result['worst_error'] * 100:.1f} %, band (p90) "
             f"±{result['band'] * 100:.0f} % ({result['within_band']} rows within); rank correlation per source "
             f"(≥ 3 rows) min {min(ranks):.2f}"]
    for s, v in result["sources"].items():
        rc = "" if v["rank_correlation"] is None else f", rank {v['rank_correlation']:.2f}"
        lines.append(f"  {s}: {v['rows']} rows, median |error| {v['median_error'] * 100:.1f} %{rc}")
    for p, v in result["pairs"].items():
        lines.append(f"  pair {p}: published {v['published']:.2f}×, estimated {v['estimated']:.2f}× "
                     f"({'within' if v['within_band'] else 'OUTSIDE'} the band)")
    lines.append(f"fit on all rows: {result['fit']}")
    return "\n".join(lines)


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# The latency model against published measurements", "",
             "`python benchmarks/published_latency.py` — every row estimated by a fit that never saw "
             "its source (leave-one-source-out).", "", "```", summary(result), "```", "",
             "| row | family | chip | source | published ms | held-out estimate ms | ÷ |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['id']} | {r['family']} | {r['chip']} | {r['source']} | {r['published_ms']:g} | "
                     f"{r['held_out_ms']:.2f} | {r['ratio']:.2f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(result, out / "estimate_vs_published.png")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    families = sorted({r["family"] for r in result["rows"]})
    for n, fam in enumerate(families):
        pts = [r for r in result["rows"] if r["family"] == fam]
        ax.scatter([r["published_ms"] for r in pts], [r["held_out_ms"] for r in pts], label=fam, s=22, color=f"C{n}")
    lo = min(min(r["published_ms"], r["held_out_ms"]) for r in result["rows"]) / 1.5
    hi = max(max(r["published_ms"], r["held_out_ms"]) for r in result["rows"]) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for f in (1 + result["band"], 1 - result["band"]):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="published latency (ms)",
           ylabel="estimate, leave-one-source-out (ms)",
           title=f"median |error| {result['median_error'] * 100:.0f} %, band ±{result['band'] * 100:.0f} % (dotted)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
