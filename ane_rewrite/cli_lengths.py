"""``ane-rewrite optimize --seq-len N1 N2 …``: one package per side, a function per length.

The model is rewritten and verified (PyTorch) for each length; baseline and rewritten are each
exported as one multifunction package (``lengths.py``: ``seq_<N>``, weights shared); each
function of both is executed here (fp32, fp16) against the model on its length's inputs and
analyzed on its own. One row per length; ``--json``: one object, schema
"ane-rewrite.optimize-lengths/1": ``source``, ``seq_lens``, ``lengths`` (per length: ``seq_len``,
``function``, ``inputs``, ``passes``, ``equivalence``, ``programs``, ``executed`` — as in
"ane-rewrite.optimize/1" — and with ``--compress`` ``compressed_fp16_psnr_db``), ``compressed`` (null, or ``kind``, ``weights_mib``,
``rewritten_weights_mib``), ``packages``, ``exit_code``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import analyze, verify
from .cli_json import _compressed, _side, optimize_object
from .cli_table import estimate_rows, step, table as _table
from .compare import execute_packages, shipped_ok
from .coreml import mil
from .coreml.compress import weights_bytes
from .frontend import models
from .lengths import function_name, optimize_lengths
from .runtime import load

SCHEMA = "ane-rewrite.optimize-lengths/1"


def _length_result(lens, n: int, packages: dict, verify_packages: bool) -> dict:
    name, model, example = function_name(n), lens.model, lens.example_inputs[n]
    result = {"seq_len": n, "function": name, "example": example, "rewritten": lens.rewritten[n],
              "report": verify(model, lens.rewritten[n], example)}
    result["summaries"] = {side: mil.summary(mil.program_ops(packages[side], name)) for side in ("baseline", "rewritten")}
    result["analyses"] = {side: analyze(packages[side], function=name) for side in ("baseline", "rewritten")}
    result["artefacts"] = None
    if verify_packages:
        exes = {side: load(path, name) for side, path in packages.items()}
        result["artefacts"] = execute_packages(model, lens.rewritten[n], example, exes)
    result["ok"] = result["report"].ok and (result["artefacts"] is None or shipped_ok(result["artefacts"]))
    return result


def run_optimize_lengths(args, source: str, out_dir: Path) -> int:
    n_steps = 4 + (not args.no_verify) + bool(args.compress)
    step(1, n_steps, f"loading {source}")
    model = models.load(source)
    step(2, n_steps, f"capturing and rewriting for lengths {', '.join(map(str, args.seq_len))}")
    t = time.perf_counter()
    lens = optimize_lengths(model, args.seq_len, batch=args.batch)
    t_opt = time.perf_counter() - t
    step(3, n_steps, "exporting the baseline and the rewritten model (a function per length)")
    packages = {"baseline": out_dir / "baseline.mlpackage", "rewritten": out_dir / "rewritten.mlpackage"}
    lens.export(packages["baseline"], baseline=True, overwrite=True)
    lens.export(packages["rewritten"], overwrite=True)
    if args.compress:
        step(4, n_steps, f"compressing the rewritten package's weights ({args.compress})")
        packages["compressed"] = out_dir / f"rewritten_{args.compress}.mlpackage"
        lens.export(packages["compressed"], compress=args.compress, overwrite=True)
    step(n_steps, n_steps, "verifying every length: PyTorch (3 draws)" +
          ("" if args.no_verify else f", and the {len(packages)} packages executed in fp32 and fp16"))
    results = [_length_result(lens, n, packages, not args.no_verify) for n in args.seq_len]
    code = 0 if all(r["ok"] for r in results) else 1
    if args.json:
        print(_json(source, args.seq_len, results, packages, args.compress, code, t_opt))
    else:
        print(_text(source, results, packages, args.compress))
    return code


def _json(source: str, seq_lens: list[int], results: list[dict], packages: dict, compress: str | None,
          code: int, t_opt: float) -> str:
    lengths = []
    for r in results:
        obj = optimize_object(source, r["example"], r["rewritten"], r["report"], r["summaries"], r["analyses"],
                              r["artefacts"], r["ok"], {}, packages, code, None)
        keep = ("inputs", "passes", "equivalence", "programs", "executed")
        lengths.append({"seq_len": r["seq_len"], "function": r["function"], **{k: obj[k] for k in keep}})
        if compress and r["artefacts"] is not None:
            lengths[-1]["compressed_fp16_psnr_db"] = _side(r["artefacts"]["compressed"])["fp16_psnr_db"]
    compressed = _compressed(compress, packages, None)
    if compressed is not None:
        compressed = {k: compressed[k] for k in ("kind", "weights_mib", "rewritten_weights_mib")}
    result = {"schema": SCHEMA, "source": source, "seq_lens": seq_lens, "lengths": lengths, "compressed": compressed,
              "optimize_s": round(t_opt, 2), "packages": {k: str(v) for k, v in packages.items()}, "exit_code": code}
    return json.dumps(result, indent=2, allow_nan=False)


def _text(source: str, results: list[dict], packages: dict, compress: str | None) -> str:
    chip = next(iter(results[0]["analyses"]["baseline"].estimates))
    rows = [("seq_len (function)", "baseline", "rewritten")]
    for r in results:
        s, a = r["summaries"], r["analyses"]
        lb, ln = (a[side].estimates[chip]["latency_ms"] for side in ("baseline", "rewritten"))
        rows.append((f"{r['seq_len']} ({r['function']})", "", ""))
        rows.append(("  equivalence PSNR (dB)", "-", f"{round(r['report'].psnr, 2):.1f}"))  # as the JSON rounds it
        for key, label in (("ops", "ops (non-const)"), ("linear", "linear"), ("softmax", "softmax"),
                           ("transpose", "transpose")):
            rows.append((f"  {label}", str(s["baseline"][key]), str(s["rewritten"][key])))
        rows += estimate_rows(chip, lb, ln, a["baseline"].estimates[chip]["band"], indent="  ")
        if r["artefacts"] is not None:
            for prec in ("fp32", "fp16"):
                rows.append((f"  executed {prec} PSNR (dB)", f"{r['artefacts']['baseline'][prec].psnr:.1f}",
                             f"{r['artefacts']['rewritten'][prec].psnr:.1f}"))
            if compress:
                rows.append((f"  executed fp16 PSNR, {compress} (dB)", "-",
                             f"{r['artefacts']['compressed']['fp16'].psnr:.1f}"))
        rows.append(("  verdict", "", "ok" if r["ok"] else "NOT OK"))
    lines = [f"\nane-rewrite optimize {source}  (lengths {', '.join(str(r['seq_len']) for r in results)})\n",
             _table(rows)]
    if compress:
        size, full = (weights_bytes(packages[k]) / 2**20 for k in ("compressed", "rewritten"))
        lines.append(f"\ncompressed ({compress}): weights {size:.1f} MiB (rewritten {full:.1f} MiB)")
    lines.append(f"\nsaved {', '.join(str(p) for p in packages.values())}"
                 f"\n(details per length: ane-rewrite analyze {packages['rewritten']} --function seq_<N>)")
    return "\n".join(lines)
