"""report_html(package, baseline=None) → one self-contained HTML page: what Xcode's performance
report shows a Mac user, from the static analysis and the package executed here.

The page holds the estimated latency per chip profile as a chart (inline SVG, baseline beside
rewritten), the op mix, the findings by rule with their sources and per op, the metrics, the
executed figures (``runtime.package_check``: fp16 against the program's own fp32 outputs, fp32
against the baseline package's, fp16 hazards). No script and no external resource: it renders
offline, from a file, in any browser. Estimates are analytic, not device measurements.
It sits above both the analysis and the runtime, whose results it shows.
"""
from __future__ import annotations

import datetime
import html
import math
from pathlib import Path

from . import cost
from .analysis.report import Analysis, analyze
from .coreml.mil import function_names
from .cost import speedup_text
from .runtime import load
from .runtime.package_check import check_package

MAX_OP_ROWS = 300
COLORS = {"baseline": "#9aa5b1", "rewritten": "#2f7ed8"}
STYLE = """
body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d2733}
h1{font-size:22px} h2{font-size:17px;margin-top:2em;border-bottom:1px solid #d8dee4}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #d8dee4;padding:3px 8px;text-align:left}
th{background:#f3f5f7} td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#5b6670;font-size:12px} .off_ane{color:#b42318} .slow{color:#b54708} .error{color:#7a0916}
.cards{display:flex;gap:1em;flex-wrap:wrap} .card{border:1px solid #d8dee4;border-radius:6px;padding:.6em 1em}
.card b{display:block;font-size:20px}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(head: list[str], rows: list[list], numeric_from: int = 1, cls: str = "") -> str:
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        cells = "".join(f'<td class="n">{c}</td>' if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) + "</tbody></table>"


def latency_chart(analyses: dict[str, Analysis]) -> str:
    """Horizontal bars, a group per chip profile, a bar per side; width proportional to ms."""
    chips = list(next(iter(analyses.values())).estimates)
    peak = max(a.estimates[c]["latency_ms"] for a in analyses.values() for c in chips) or 1.0
    left, width, bar, gap = 60, 560, 16, 14
    group = bar * len(analyses) + gap
    height = group * len(chips) + 40
    parts = [f'<svg id="latency-chart" width="{left + width + 120}" '
             f'height="{height}" role="img" aria-label="estimated latency per chip profile">']
    for i, chip in enumerate(chips):
        y0 = 10 + i * group
        parts.append(f'<text x="0" y="{y0 + bar * len(analyses) / 2 + 4}" font-size="12">{_e(chip)}</text>')
        for j, (side, a) in enumerate(analyses.items()):
            ms = a.estimates[chip]["latency_ms"]
            w = max(1.0, width * ms / peak)
            y = y0 + j * bar
            parts.append(f'<rect class="bar {side}" data-chip="{_e(chip)}" data-ms="{ms}" x="{left}" y="{y}" '
                         f'width="{w:.1f}" height="{bar - 2}" fill="{COLORS.get(side, "#888")}">'
                         f"<title>{_e(side)} {_e(chip)}: {ms:.2f} ms {_e(cost.band_text(a.estimates[chip]['band']))}</title></rect>")
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 5}" font-size="11">{ms:.2f} ms</text>')
    legend_y = height - 14
    for j, side in enumerate(analyses):
        parts.append(f'<rect x="{left + j * 110}" y="{legend_y - 9}" width="10" height="10" fill="{COLORS.get(side, "#888")}"/>'
                     f'<text x="{left + j * 110 + 14}" y="{legend_y}" font-size="12">{_e(side)}</text>')
    return "".join(parts) + "</svg>"


def _op_mix(analyses: dict[str, Analysis]) -> str:
    types = sorted({t for a in analyses.values() for t in a.metrics["op_mix"]},
                   key=lambda t: -max(a.metrics["op_mix"].get(t, 0) for a in analyses.values()))
    rows = [[_e(t)] + [str(a.metrics["op_mix"].get(t, 0)) for a in analyses.values()] for t in types]
    return _table(["op"] + list(analyses), rows, cls="op-mix")


def _rules(analyses: dict[str, Analysis]) -> str:
    info = {f.rule: f for a in analyses.values() for f in a.findings}
    counts = {side: a.by_rule() for side, a in analyses.items()}
    rows = [[_e(rule), f'<span class="{_e(f.severity)}">{_e(f.severity)}</span>', _e(f.consequence), _e(f.source)]
            + [str(counts[side][rule]) for side in analyses] for rule, f in sorted(info.items())]
    return _table(["rule", "severity", "consequence", "source"] + list(analyses), rows, numeric_from=4, cls="rules")


def _findings(side: str, a: Analysis) -> str:
    rows = [[_e(f.op), _e(f.type), _e(f.rule), f'<span class="{_e(f.severity)}">{_e(f.severity)}</span>', _e(f.reason)]
            for f in a.findings[:MAX_OP_ROWS]]
    more = len(a.findings) - MAX_OP_ROWS
    note = f'<p class="note">and {more} more (ane-rewrite analyze --json lists them all)</p>' if more > 0 else ""
    return (f"<details{' open' if side == 'rewritten' else ''}><summary>{_e(side)}: {len(a.findings)} findings</summary>"
            + _table(["op", "type", "rule", "severity", "reason"], rows, numeric_from=5, cls=f"findings {side}")
            + note + "</details>")


def _metrics(analyses: dict[str, Analysis]) -> str:
    chip = next(iter(next(iter(analyses.values())).estimates))
    getters = [("ops (non-const)", lambda a: str(a.metrics["ops"])),
               ("transposes", lambda a: str(a.metrics["copies"]["transpose"])),
               ("largest rank", lambda a: max(a.metrics["ranks"], key=int, default="0")),
               ("weights (MiB)", lambda a: f"{a.metrics['weight_bytes'] / 2**20:.2f}"),
               ("activations, padded (MiB)", lambda a: f"{a.metrics['activation_bytes_padded'] / 2**20:.2f}"),
               (f"est. peak memory, {chip} (MiB)", lambda a: f"{a.estimates[chip]['peak_memory_mib']:.1f}"),
               (f"est. off-ANE ops, {chip}", lambda a: str(a.estimates[chip]["off_ane_ops"]))]
    return _table(["metric"] + list(analyses), [[_e(n)] + [g(a) for a in analyses.values()] for n, g in getters],
                  cls="metrics")


def _executed(checks: dict) -> str:
    rows = [[_e(side), str(c.draws), _fmt(c.fp16_psnr), _fmt(c.against_psnr), str(len(c.hazards.origins))]
            for side, c in checks.items()]
    out = _table(["package", "draws", "fp16 vs own fp32 PSNR (dB)", "fp32 vs baseline fp32 PSNR (dB)",
                  "fp16 hazards (origins)"], rows, cls="executed")
    hazards = [[_e(side), _e(h.kind), _e(h.location), f"{h.count} of {h.total}"]
               for side, c in checks.items() for h in c.hazards.origins]
    if hazards:
        out += _table(["package", "hazard", "where", "elements"], hazards, numeric_from=3, cls="hazards")
    return out


def report_html(package, baseline=None, function: str | None = None, draws: int = 4, execute: bool = True) -> str:
    """The page for ``package`` (a saved .mlpackage), beside ``baseline`` when given."""
    paths = {"baseline": baseline, "rewritten": package} if baseline is not None else {"rewritten": package}
    analyses = {side: analyze(p, function=function) for side, p in paths.items()}
    chip = next(iter(analyses["rewritten"].estimates))
    band = analyses["rewritten"].estimates[chip]["band"]
    cards = [f'<div class="card">est. latency {chip}, rewritten<b>{analyses["rewritten"].estimates[chip]["latency_ms"]:.2f} ms'
             f' <small>{_e(cost.band_text(band))}</small></b></div>']
    if baseline is not None:
        b, r = (analyses[s].estimates[chip]["latency_ms"] for s in ("baseline", "rewritten"))
        cards.insert(0, f'<div class="card">est. latency {chip}, baseline<b>{b:.2f} ms <small>{_e(cost.band_text(band))}</small></b></div>')
        cards.append(f'<div class="card">estimated speed-up<b>{_e(speedup_text(b, r, band))}</b></div>')
    sections = [("Estimated latency per chip profile", latency_chart(analyses)
                 + f'<p class="note">Analytic estimates (ane_rewrite/cost.py), not device measurements: each is within '
                 f'{_e(cost.band_text(band))} of the device for 90 % of published measurements the model was not fitted '
                 'to; a speed-up is a gain only beyond that band.</p>'),
                ("Metrics", _metrics(analyses)), ("Op mix", _op_mix(analyses)), ("Findings by rule", _rules(analyses)),
                ("Findings per op", "".join(_findings(side, a) for side, a in analyses.items()))]
    if execute:
        exes = {side: load(p, function) for side, p in paths.items()}  # each loaded and compiled once
        checks = {side: check_package(exe, function, draws, exes.get("baseline") if side == "rewritten" else None)
                  for side, exe in exes.items()}
        cards.append(f'<div class="card">executed fp16 PSNR, rewritten<b>{_fmt(checks["rewritten"].fp16_psnr)} dB</b></div>')
        sections.append(("Executed here (ane_rewrite.runtime)", _executed(checks)
                         + '<p class="note">Inputs drawn from the program\'s input types; token ids below the '
                         "vocabulary their embedding holds.</p>"))

    names = function_names(package)
    shown = f" (function {function or names[0]} of {', '.join(names)})" if len(names) > 1 else ""
    title = f"ane-rewrite report: {Path(package).name}{shown}"
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(f"<h2>{_e(h)}</h2>{content}" for h, content in sections)
    files = ", ".join(f"{_e(side)}: {_e(p)}" for side, p in paths.items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1><p class=\"note\">{files} · made {made}</p>"
            f'<div class="cards">{"".join(cards)}</div>{body}</body></html>')
