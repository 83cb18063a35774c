"""Weight compression over the zoo: each rewritten package saved fp16 and compressed as each of
``ane_rewrite.coreml.compress.COMPRESSIONS``; each executed (ane_rewrite.runtime, fp16) against
the PyTorch model, PSNR pooled over 16 draws, beside its weights' size.

    python benchmarks/compression_zoo.py [--models NAME ...] [--out benchmarks/results]

The zoo is compare_zoo's (random weights from configs; nothing downloaded). Writes
``compression.json`` after every model and ``compression.md`` (the table). Random Gaussian
weights are the hardest case for a look-up table: a trained model's cost is measured on it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path

from compare_zoo import ZOO

DRAWS = 16


def run_one(name: str, spec: dict, workdir: Path) -> dict:
    import torch

    import ane_rewrite
    from ane_rewrite.coreml.compress import COMPRESSIONS, save_compressed, weights_bytes
    from ane_rewrite.frontend import models
    from ane_rewrite.runtime.verify import verify_packages

    torch.manual_seed(0)
    model = spec["build"]()
    example = models.example_inputs(model, seq_len=spec["seq"] or 128)
    fast = ane_rewrite.optimize(model, example)
    packages = {"fp16": workdir / f"{name}.mlpackage"}
    mlmodel = ane_rewrite.export(fast, example, packages["fp16"], progress=False, overwrite=True)
    row = {"model": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "compress_s": {}}
    for kind in COMPRESSIONS:
        t = time.perf_counter()
        packages[kind] = workdir / f"{name}_{kind}.mlpackage"
        save_compressed(mlmodel, kind, packages[kind], overwrite=True, progress=False)
        row["compress_s"][kind] = round(time.perf_counter() - t, 1)
    executed = verify_packages(model, {k: (p, fast) for k, p in packages.items()}, example,
                               precisions=("fp16",), draws=DRAWS)
    row["variants"] = {k: {"weights_mib": round(weights_bytes(p) / 2**20, 2),
                           "fp16_psnr_db": round(executed[k]["fp16"].psnr, 1)} for k, p in packages.items()}
    return row


def _fmt(rows: list[dict]) -> str:
    kinds = [k for k in rows[0]["variants"]] if rows and "variants" in rows[0] else []
    head = "| model | params (M) | " + " | ".join(f"{k} MiB / dB" for k in kinds) + " |"
    lines = [head, "|" + "---|" * (2 + len(kinds))]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |" + " |" * len(kinds))
            continue
        cells = [f"{r['variants'][k]['weights_mib']:.1f} / {r['variants'][k]['fp16_psnr_db']:.1f}" for k in kinds]
        lines.append(f"| {r['model']} | {r['params_m']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(ZOO), help="a subset of the zoo (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    from ane_rewrite import quiet

    quiet.install()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for name in args.models or list(ZOO):
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ane_compress_") as tmp:
            try:
                row = run_one(name, ZOO[name], Path(tmp))
            except Exception as exc:  # recorded, not skipped
                traceback.print_exc()
                row = {"model": name, "error": f"{type(exc).__name__}: {exc}"}
        row["seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        print(f"{name}: {row.get('variants', row.get('error'))} ({row['seconds']} s)", flush=True)
        (out / "compression.json").write_text(json.dumps({"draws": DRAWS, "rows": rows}, indent=1))
    minutes = (time.perf_counter() - start) / 60
    text = (f"`python benchmarks/compression_zoo.py{' --models ' + ' '.join(args.models) if args.models else ''}`"
            f" ({len(rows)} models, {minutes:.1f} min): the rewritten package's weights and its fp16 PSNR against "
            f"PyTorch, executed here over {DRAWS} draws, per compression\n\n{_fmt(rows)}\n")
    (out / "compression.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
