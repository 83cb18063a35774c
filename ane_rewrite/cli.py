"""ane-rewrite: the command line.

    ane-rewrite optimize [SOURCE] [--seq-len N [N ...]] [--batch B] [--out DIR] [--no-verify] [--json]
    ane-rewrite analyze PATH [--json] [--chip NAME ...] [--function NAME]
    ane-rewrite report PATH [--baseline PATH] [--function NAME] [--out FILE] [--draws N] [--no-execute]
    ane-rewrite bench PATH [--runs N] [--warmup N] [--append CSV] …

SOURCE is ``hf:<local dir | class name | model type>`` (a local Hugging Face folder may also be
named alone), ``timm:<model name>``, ``<python.module>:<factory>`` or a saved ``torch.export``
program (``<file>.pt2``, captured with its example inputs, whose shapes it keeps); without it, DistilBERT with an SST-2 head from its default config
(Apple's case study). The command optimizes, verifies, exports baseline and rewritten models,
executes both saved packages (``ane_rewrite.runtime``, fp32 and fp16) against the PyTorch model,
and prints them side by side with their ANE analysis. Exit status 1 when the rewrite is not
equivalent, when the rewritten package in fp32 is below its bar (60 dB), or when its fp16 PSNR
is more than 1 dB below the baseline package's; ``--no-verify`` skips executing the packages;
``--json`` prints one JSON object instead of the tables (its keys: ``cli_json.py``). Several
``--seq-len`` values: one package per side holding a function per length (``cli_lengths.py``). ``analyze``
reads a saved .mlpackage: findings by ANE placement rule, metrics, and estimates (analytic, not
measured) per chip profile; ``--json`` prints one JSON object. ``report`` writes one
self-contained HTML page of a package (beside its baseline): ``html_report.py``. ``bench`` times a
package with Core ML on a Mac (elsewhere: exit 2), a row of the published latency dataset. Every
estimated latency carries the latency model's held-out error band (``cost.py``).

Exit status: 0 done and within the bars; 1 the rewrite is not equivalent or the rewritten
package misses its bars (the results are still printed and saved); 2 an error (bad source,
capture or export failure), named on stderr.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from . import bench, cost
from .cli_json import optimize_json
from .cli_lengths import run_optimize_lengths
from .cli_table import estimate_rows, step, table as _table
from .compare import FP16_MARGIN_DB, execute_packages, shipped_ok
from .coreml import mil
from .coreml.compress import COMPRESSIONS, save_compressed, weights_bytes
from .frontend import models
from .html_report import report_html
from .errors import AneRewriteError, ExportError


def _slug(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", source).strip("_")


def run_optimize(args) -> int:
    from . import analyze, export, optimize, verify

    source = args.source or models.DEFAULT_SOURCE
    out_dir = Path(args.out or Path("ane_rewrite_out") / _slug(source))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
    if args.seq_len and len(args.seq_len) > 1:
        return run_optimize_lengths(args, source, out_dir)
    n = 5 + (not args.no_verify) + bool(args.compress)
    t = step(1, n, f"loading {source}")
    model = models.load(source)
    example = models.example_inputs(model, seq_len=args.seq_len[0] if args.seq_len else None, batch=args.batch)
    t = step(2, n, "capturing and rewriting")
    rewritten = optimize(model, example)
    t_opt = time.perf_counter() - t
    t = step(3, n, "verifying equivalence (PyTorch, 3 draws)")
    report = verify(model, rewritten, example)
    t = step(4, n, "exporting the baseline with coremltools")
    base_ml = export(model, example, out_dir / "baseline.mlpackage", progress=False, overwrite=True)
    t_base = time.perf_counter() - t
    t = step(5, n, "exporting the rewritten model with coremltools")
    new_ml = export(rewritten, example, out_dir / "rewritten.mlpackage", progress=False, overwrite=True)
    t_new = time.perf_counter() - t
    packages = {"baseline": out_dir / "baseline.mlpackage", "rewritten": out_dir / "rewritten.mlpackage"}
    if args.compress:
        step(6, n, f"compressing the rewritten package's weights ({args.compress})")
        packages["compressed"] = out_dir / f"rewritten_{args.compress}.mlpackage"
        save_compressed(new_ml, args.compress, packages["compressed"], overwrite=True, progress=False)

    artefacts = None
    if not args.no_verify:
        step(n, n, f"executing the {len(packages)} packages in fp32 and fp16 (ane_rewrite.runtime)")
        artefacts = execute_packages(model, rewritten, example, packages)

    base, new = mil.summary(mil.program_ops(base_ml)), mil.summary(mil.program_ops(new_ml))
    base_an, new_an = analyze(base_ml), analyze(new_ml)
    package_ok = shipped_ok(artefacts) if artefacts is not None else True
    code = 0 if report.ok and package_ok else 1
    if args.json:
        print(optimize_json(source, example, rewritten, report, {"baseline": base, "rewritten": new},
                            {"baseline": base_an, "rewritten": new_an}, artefacts, package_ok,
                            {"optimize": t_opt, "export_baseline": t_base, "export_rewritten": t_new},
                            packages, code, args.compress))
        return code
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in (example.items() if isinstance(example, dict)
                                                             else enumerate(example)))
    print(f"\nane-rewrite optimize {source}  ({shapes})\n")
    print("passes")
    for r in rewritten.ane_report.results:
        print(f"  {r.summary()}")
        for d in r.declined:
            print(f"    declined {d.node}: {d.reason} ({d.rule})")
    verdict = "ok" if report.ok else "NOT EQUIVALENT"
    print(f"\nequivalence  PSNR {report.psnr:.1f} dB, max rel err {report.max_rel:.2g} "
          f"over {report.draws} draws: {verdict}")
    if report.divergence:
        print(f"  first divergence: {report.divergence}")
    rows = [("MIL program", "baseline", "rewritten"),
            ("ops (non-const)", str(base["ops"]), str(new["ops"])),
            ("linear", str(base["linear"]), str(new["linear"])),
            ("conv (4-D)", str(base["conv_4d"]), str(new["conv_4d"])),
            ("transpose", str(base["transpose"]), str(new["transpose"])),
            ("reshape/expand/squeeze", str(base["reshape"]), str(new["reshape"])),
            ("softmax", str(base["softmax"]), str(new["softmax"])),
            ("einsum", str(base["einsum"]), str(new["einsum"])),
            ("gather/gather_nd", str(base["gather"]), str(new["gather"])),
            ("largest rank", str(base["max_rank"]), str(new["max_rank"])),
            ("time: optimize (s)", "-", f"{t_opt:.1f}"),
            ("time: export (s)", f"{t_base:.1f}", f"{t_new:.1f}")]
    print()
    print(_table(rows))
    print("\n" + _analysis_table(base_an, new_an))
    if artefacts is not None:
        print("\n" + _artefact_table(artefacts))
    if args.compress:
        print("\n" + _compressed_line(args.compress, packages, artefacts))
    print(f"\nsaved {', '.join(str(p) for p in packages.values())}"
          f"\n(details: ane-rewrite analyze {out_dir / 'rewritten.mlpackage'})")
    return code


def _compressed_line(kind: str, packages: dict, artefacts: dict | None) -> str:
    size, full = weights_bytes(packages["compressed"]) / 2**20, weights_bytes(packages["rewritten"]) / 2**20
    line = f"compressed ({kind}): weights {size:.1f} MiB (rewritten {full:.1f} MiB, {full / size:.2f}× smaller)"
    if artefacts is not None:
        line += (f"; executed fp16 PSNR {artefacts['compressed']['fp16'].psnr:.1f} dB "
                 f"(rewritten {artefacts['rewritten']['fp16'].psnr:.1f} dB) — the compression's accuracy cost")
    return line


def _artefact_table(artefacts: dict) -> str:
    base, new = artefacts["baseline"], artefacts["rewritten"]
    rows = [(f"saved packages, executed ({new['fp32'].draws} draws)", "baseline", "rewritten")]
    for prec in ("fp32", "fp16"):
        rows.append((f"{prec} PSNR vs PyTorch (dB)", f"{base[prec].psnr:.1f}", f"{new[prec].psnr:.1f}"))
    rows.append(("fp16 hazards (origins)", str(len(base["hazards"].origins)), str(len(new["hazards"].origins))))
    lines = [_table(rows)]
    verdict = "ok" if shipped_ok(artefacts) else "NOT OK"
    lines.append(f"  rewritten package: fp32 {'meets' if new['fp32'].ok else 'misses'} its {new['fp32'].psnr_bar:.0f} dB "
                 f"bar; fp16 {new['fp16'].psnr - base['fp16'].psnr:+.1f} dB against the baseline's "
                 f"(allowed −{FP16_MARGIN_DB:.0f}): {verdict}")
    for side, res in (("baseline", base), ("rewritten", new)):
        for prec in ("fp32", "fp16"):
            if res[prec].divergence:
                lines.append(f"  {side} {prec} first diverging op: {res[prec].divergence}")
        for hazard in res["hazards"].origins[:3]:
            lines.append(f"  {side} {hazard}")
    return "\n".join(lines)


def _analysis_table(base, new) -> str:
    """Findings per ANE rule and the estimates, baseline next to rewritten."""
    b_rules, n_rules = base.by_rule(), new.by_rule()
    severity = {f.rule: f.severity for f in base.findings + new.findings}
    rows = [("ANE analysis (static)", "baseline", "rewritten")]
    for rule in sorted(set(b_rules) | set(n_rules), key=lambda r: (-b_rules[r], r)):
        rows.append((f"{rule} [{severity[rule]}]", str(b_rules[rule]), str(n_rules[rule])))
    mb, mn = base.metrics, new.metrics
    rows.append(("activations, padded (MiB)", f"{mb['activation_bytes_padded'] / 2**20:.1f}",
                 f"{mn['activation_bytes_padded'] / 2**20:.1f}"))
    rows.append(("largest tensor (MiB)", f"{mb['largest_tensor']['bytes'] / 2**20:.2f}",
                 f"{mn['largest_tensor']['bytes'] / 2**20:.2f}"))
    for chip in base.estimates:
        eb, en = base.estimates[chip], new.estimates[chip]
        rows += estimate_rows(chip, eb["latency_ms"], en["latency_ms"], eb["band"])
    chip = next(iter(base.estimates))
    rows.append(("est. peak memory (MiB)", f"{base.estimates[chip]['peak_memory_mib']:.1f}",
                 f"{new.estimates[chip]['peak_memory_mib']:.1f}"))
    return _table(rows) + (f"\n  (estimates, not device measurements: {cost.band_text()} is the error on published "
                           "measurements the model was not fitted to, and a gain must exceed it: ane_rewrite/cost.py)")


def run_analyze(args) -> int:
    from .analysis import analyze, format_analysis

    result = analyze(args.path, tuple(args.chip) if args.chip else None, function=args.function)
    if args.json:
        print(result.to_json())
    else:
        names = mil.function_names(args.path)
        if len(names) > 1:
            print(f"ane-rewrite analyze {args.path}  (function {args.function or names[0]} of {', '.join(names)})\n")
        else:
            print(f"ane-rewrite analyze {args.path}\n")
        print(format_analysis(result, max_per_rule=args.show))
    return 0


def run_report(args) -> int:
    page = report_html(args.path, args.baseline, args.function, args.draws, execute=not args.no_execute)
    out = Path(args.out or Path(args.path).with_name(Path(args.path).stem + "_report.html"))
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write the report {out}: {exc.strerror or exc}") from exc
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ane-rewrite", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("optimize", help="rewrite, verify and export a model next to its baseline")
    opt.add_argument("source", nargs="?", help=f"model source (default {models.DEFAULT_SOURCE})")
    opt.add_argument("--seq-len", type=int, nargs="+", metavar="N",
                     help="sequence length for text models (128; a .pt2 program: its own); several lengths: "
                          "one package per side with a function per length (seq_<N>)")
    opt.add_argument("--batch", type=int, help="batch size (1; a .pt2 program: its own)")
    opt.add_argument("--out", help="output directory (ane_rewrite_out/<source>); its packages are replaced")
    opt.add_argument("--no-verify", action="store_true", help="do not execute the saved packages (fp32, fp16)")
    opt.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    opt.add_argument("--compress", choices=COMPRESSIONS,
                     help="also save the rewritten package with compressed weights, with its size and accuracy")
    ana = sub.add_parser("analyze", help="static ANE readiness report of a saved Core ML model")
    ana.add_argument("path", help="a .mlpackage (ML Program)")
    ana.add_argument("--json", action="store_true", help="print one JSON object (findings, metrics, estimates)")
    ana.add_argument("--chip", action="append", help="chip profile(s) to estimate (default: all)")
    ana.add_argument("--show", type=int, default=3, help="findings shown per rule in the text report (3)")
    ana.add_argument("--function", help="the function of a multifunction package (its default one)")
    rep = sub.add_parser("report", help="one self-contained HTML page: analysis, chart, executed figures")
    rep.add_argument("path", help="a .mlpackage (ML Program)")
    rep.add_argument("--baseline", help="the baseline .mlpackage, shown beside it")
    rep.add_argument("--function", help="the function of a multifunction package (its default one)")
    rep.add_argument("--out", help="the HTML file (default: <package>_report.html beside the package)")
    rep.add_argument("--draws", type=int, default=4, help="input draws the packages are executed on (4)")
    rep.add_argument("--no-execute", action="store_true", help="static analysis only")
    for command in (opt, ana, rep, bench.add_parser(sub)):
        command.add_argument("-v", "--verbose", action="store_true", help="show every third-party message (quiet.py)")
    args = parser.parse_args(argv)
    if not args.verbose:
        from . import quiet

        quiet.install()
    try:
        return {"analyze": run_analyze, "report": run_report, "optimize": run_optimize,
                "bench": bench.run}[args.command](args)
    except AneRewriteError as exc:
        print(f"ane-rewrite: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
