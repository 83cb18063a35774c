"""The zoo's table (``compare_zoo.py``): a headline, then a row per model, baseline beside rewritten."""
from __future__ import annotations

import statistics


def _fp16_gap(row: dict) -> float:
    return row["rewritten"]["executed"]["fp16"] - row["baseline"]["executed"]["fp16"]


def table(rows: list[dict], chip: str) -> str:
    """Markdown: the headline, the executed packages' verdict, a row per model (estimates on ``chip``)."""
    from ane_rewrite import cost

    ok = [r for r in rows if "error" not in r and "baseline" in r]
    alone = [r for r in rows if "baseline_not_convertible" in r]  # the model as is does not convert
    speedups = sorted(r["est_speedup"] for r in ok)
    lines = []
    if ok:
        lines.append(f"**Headline** ({len(ok)}/{len(rows)} models rewritten, verified and exported): estimated "
                     f"{chip} ANE latency, baseline ÷ rewritten: median {statistics.median(speedups):.2f}×, "
                     f"range {speedups[0]:.2f}×–{speedups[-1]:.2f}×; `linear` ops left "
                     f"{sum(r['rewritten']['linear'] for r in ok)} (baseline "
                     f"{sum(r['baseline']['linear'] for r in ok)}); all equivalent: "
                     f"{all(r['equivalent'] for r in ok)} (min PSNR {min(r['psnr_db'] for r in ok):.1f} dB); passes rolled "
                     f"back by safe mode: {sum(len(r.get('rolled_back', [])) for r in ok)}. "
                     f"Estimates are analytic (ane_rewrite/cost.py), not device measurements: each latency "
                     f"{cost.band_text()}, so a speed-up is a gain only above {1 + cost.BAND:.2f}×: "
                     f"{sum(cost.is_gain(x) for x in speedups)}/{len(ok)} rows are; "
                     f"{sum(cost.is_gain(1 / x) for x in speedups)} slower beyond the band.\n")
    if alone:
        lines.append(f"**Converted only after the rewrite** ({len(alone)}): coremltools cannot convert the model as "
                     "it is — " + "; ".join(f"{r['model']}: {r['baseline_not_convertible'][:110]}" for r in alone) + ".\n")
    if ok and all("executed" in r["rewritten"] for r in ok + alone):
        lines.append(f"**Executed packages** (ane_rewrite.runtime, against PyTorch): rewritten fp32 min "
                     f"{min(r['rewritten']['executed']['fp32'] for r in ok + alone):.1f} dB (bar 60); rewritten fp16 − baseline "
                     f"fp16: min {min(_fp16_gap(r) for r in ok):+.1f} dB, "
                     f"{sum(r['shipped_ok'] for r in ok)}/{len(ok)} rows meet the "
                     "command line's bars (fp32 ≥ 60 dB, fp16 within −1 dB; ane_rewrite/compare.py).\n")
    head = ("| model | family | params (M) | PSNR dB | ops base → new | linear base → new | transposes base → new "
            f"| est. {chip} ms base / new (×; ±band held-out) | of which on the ANE, ms | est. peak MiB base / new | CPU ms base / new "
            "| optimize s | export s base / new | executed fp32 dB base / new | executed fp16 dB base / new |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['family']} | – | failed: {r['error'][:80]} |" + " |" * 11)
            continue
        if "baseline" not in r:
            n, en = r["rewritten"], r["rewritten"]["estimates"][chip]
            lines.append(f"| {r['model']} | {r['family']} | {r['params_m']} | {r['psnr_db']} | not convertible → {n['ops']} "
                         f"| – → {n['linear']} | – → {n['transpose']} | – / {en['latency_ms']:.2f} | – / {en['ane_ms']:.2f} "
                         f"| – / {en['peak_memory_mib']:.0f} | – / {n['cpu_ms'] or 0:.1f} | {r['optimize_s']:.1f} "
                         f"| – / {r['export_rewritten_s']:.1f} | – / "
                         + (f"{n['executed']['fp32']:.1f} | – / {n['executed']['fp16']:.1f} |" if "executed" in n
                            else "– | – |"))
            continue
        b, n = r["baseline"], r["rewritten"]
        eb, en = b["estimates"][chip], n["estimates"][chip]
        lines.append(
            f"| {r['model']} | {r['family']} | {r['params_m']} | {r['psnr_db']} | {b['ops']} → {n['ops']} "
            f"| {b['linear']} → {n['linear']} | {b['transpose']} → {n['transpose']} "
            f"| {eb['latency_ms']:.2f} / {en['latency_ms']:.2f} ({cost.speedup_text(eb['latency_ms'], en['latency_ms'])}) "
            f"| {eb['ane_ms']:.2f} / {en['ane_ms']:.2f} "
            f"| {eb['peak_memory_mib']:.0f} / {en['peak_memory_mib']:.0f} | {b['cpu_ms'] or 0:.1f} / {n['cpu_ms'] or 0:.1f} "
            f"| {r['optimize_s']:.1f} | {r['export_baseline_s']:.1f} / {r['export_rewritten_s']:.1f} "
            + (f"| {b['executed']['fp32']:.1f} / {n['executed']['fp32']:.1f} "
               f"| {b['executed']['fp16']:.1f} / {n['executed']['fp16']:.1f} |" if "executed" in n else "| – | – |"))
    return "\n".join(lines) + "\n"
