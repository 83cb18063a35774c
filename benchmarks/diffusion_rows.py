"""Realistic-width diffusion rows: an SD-1.5-class UNet and an SD3-class DiT, as is and rewritten.

Set beside the published form of apple/ml-stable-diffusion's ANE UNet (SPLIT_EINSUM_V2):
    python benchmarks/diffusion_rows.py [--models NAME ...] [--out DIR] [--unet-sample 32] [--dit-layers 4]

Random weights from configs (nothing downloaded), 77 text tokens, batch 1. Per model: optimize
(safe mode), PyTorch PSNR of the rewrite (1 draw), both exports (fp16), their MIL op mix, the
analyzer's estimates per chip (each ±35 % held-out: a speed-up is a gain only above 1.35×) and,
unless ``--no-execute``, both packages executed here in fp32 against PyTorch. Each model runs in
a child process of its own (one at a time), which records its wall time and peak RSS.

The UNet's rewritten attention is set beside the counts apple/ml-stable-diffusion's
SPLIT_EINSUM_V2 form would hold for the same config (``apple_v2_counts``): per head and per
512-query chunk one einsum for the scores, one softmax over the key axis (dim 1 of
(B, K, 1, Q)), one einsum for the values; K transposed once per attention; rank 4 throughout.
Writes ``DIR/<model>.json`` and ``DIR/results.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "diffusion"
TEXT_TOKENS = 77
APPLE_CHUNK = 512  # SPLIT_EINSUM_V2's query chunk (attention.py: CHUNK_SIZE)
MODELS = ("sd15-unet", "sd15-unet-every-head", "sd3-dit")
# a variant: (the model it rebuilds, optimize's options); its as-is side is the base row's when that ran
VARIANTS = {"sd15-unet-every-head": ("sd15-unet", {"lower_every_attention": True})}


def build(name: str, args):
    import diffusers

    if name == "sd15-unet":  # runwayml/stable-diffusion-v1-5's unet/config.json widths
        return diffusers.UNet2DConditionModel(
            sample_size=args.unet_sample, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3).eval()
    if name == "sd3-dit":  # stabilityai/stable-diffusion-3-medium's transformer widths, fewer layers
        return diffusers.SD3Transformer2DModel(
            sample_size=args.dit_sample, patch_size=2, in_channels=16, out_channels=16, num_layers=args.dit_layers,
            attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
            pooled_projection_dim=2048, pos_embed_max_size=192).eval()
    raise SystemExit(f"unknown model {name}; known: {', '.join(MODELS)}")


def describe(name: str, args) -> str:
    if name in VARIANTS:
        return describe(VARIANTS[name][0], args) + ("; every attention lowered per head (`lower_every_attention=True`"
                                                    "), the form nearest SPLIT_EINSUM_V2's")
    if name == "sd15-unet":
        return (f"SD-1.5 UNet2DConditionModel at its real widths (320/640/1280/1280, 2 layers per block, "
                f"8 heads, cross-attention 768), latent {args.unet_sample}×{args.unet_sample} "
                f"({args.unet_sample * 8}-px images; SD 1.5 generates at 64×64)")
    return (f"SD3-medium-width SD3Transformer2DModel (hidden 1536, 24 heads of 64, joint 4096) with "
            f"{args.dit_layers} of its 24 layers, latent {args.dit_sample}×{args.dit_sample} "
            f"({(args.dit_sample // 2) ** 2} image tokens + {TEXT_TOKENS} text)")


def apple_v2_counts(config, sample: int) -> dict:
    """SPLIT_EINSUM_V2's counts for a UNet config: per attention, heads × chunks einsum pairs and
    softmaxes (chunks = queries // 512, at least 1), one K transpose; cross-attention chunks too."""
    heads = config.attention_head_dim  # diffusers' name for SD 1.x's head count (an int here)
    levels = []  # (tokens, transformer blocks) per attention level
    for i, kind in enumerate(config.down_block_types):
        if "CrossAttn" in kind:
            levels.append(((sample >> i) ** 2, config.layers_per_block))
    deepest = len(config.down_block_types) - 1
    levels.append(((sample >> deepest) ** 2, 1))  # the mid block
    for i, kind in enumerate(config.up_block_types):
        if "CrossAttn" in kind:
            levels.append(((sample >> (deepest - i)) ** 2, config.layers_per_block + 1))
    attentions = sum(2 * blocks for _, blocks in levels)
    softmax = sum(2 * blocks * heads * max(1, tokens // APPLE_CHUNK) for tokens, blocks in levels)
    return {"attentions": attentions, "softmax": softmax, "einsum": 2 * softmax, "k_transposes": attentions,
            "max_rank": 4, "softmax_axis": "1 of (B, K, 1, Q)"}


def attention_form(ops) -> dict:
    """The softmaxes of a MIL program: their count, axis and input shape, and the products."""
    consts = {op.outputs[0].name: op.value for op in ops if op.type == "const" and op.outputs}
    shapes = {v.name: v.shape for op in ops for v in op.outputs}
    forms = Counter()
    for op in ops:
        if op.type == "softmax":
            axis = consts.get((op.params.get("axis") or ("",))[0])
            shape = shapes.get(op.params["x"][0], ())
            axis = axis[0] if axis else "?"
            forms[f"axis {axis if axis == '?' or axis >= 0 else axis + len(shape)} of {tuple(shape)}"] += 1
    mix = Counter(op.type for op in ops if op.type != "const")
    return {"softmax_forms": dict(forms.most_common(8)),
            **{t: mix.get(t, 0) for t in ("einsum", "matmul", "layer_norm", "reduce_mean", "rsqrt", "batch_norm",
                                          "instance_norm", "group_norm", "split", "slice_by_index", "concat")}}


def side(path: Path) -> dict:
    import ane_rewrite
    from ane_rewrite.coreml import mil

    ops = mil.program_ops(path)
    est = ane_rewrite.analyze(path).estimates
    return {**mil.summary(ops), **attention_form(ops), "op_mix": dict(mil.op_mix(ops).most_common()),
            "estimates": {chip: {k: e[k] for k in ("latency_ms", "ane_ms", "off_ane_ms", "band")} for chip, e in est.items()}}


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux


def run_one(name: str, args, out: Path) -> dict:
    import torch

    import ane_rewrite
    from ane_rewrite.frontend import models
    from ane_rewrite.rewrite.rules import COST

    torch.set_num_threads(2)
    start = time.perf_counter()
    base, options = VARIANTS.get(name, (name, {}))
    torch.manual_seed(0)
    model = build(base, args)
    flags = {"sd15-unet": f" --unet-sample {args.unet_sample}",
             "sd3-dit": f" --dit-sample {args.dit_sample} --dit-layers {args.dit_layers}"}[base]
    row = {"model": name, "what": describe(name, args),
           "command": f"python benchmarks/diffusion_rows.py --models {name}{flags}" + (" --no-execute" if args.no_execute else ""),
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    example = models.example_inputs(model, seq_len=TEXT_TOKENS)
    t = time.perf_counter()
    fast = ane_rewrite.optimize(model, example, **options)
    row["optimize_s"] = round(time.perf_counter() - t, 1)
    peaks = row["peak_rss_gib_after"] = {"optimize": _peak_gib()}
    row["passes"] = {p: dict(c) for p, c in fast.ane_report.counts().items() if c}
    costly = [d.reason for r in fast.ane_report.results for d in r.declined if d.kind == COST]
    row["left_batched"], row["left_batched_reasons"] = len(costly), sorted(set(costly))[:4]
    row["rolled_back"] = [r.summary() for r in fast.ane_report.rolled_back]
    report = ane_rewrite.verify(model, fast, example, draws=1)
    row["psnr_db"], row["equivalent"] = round(report.psnr, 1), report.ok
    paths = {}
    reuse = out / f"{base}.json" if base != name and (out / f"{base}.json").exists() else None
    for label, m in (("as_is", model), ("rewritten", fast)):
        if label == "as_is" and reuse:
            done = json.loads(reuse.read_text())
            row["as_is"], row["export_as_is_s"], row["as_is_from"] = done["as_is"], done["export_as_is_s"], base
            continue
        t = time.perf_counter()
        paths[label] = ane_rewrite.export(m, example, args.packages / f"{name}_{label}.mlpackage", progress=False, overwrite=True)
        row[f"export_{label}_s"] = round(time.perf_counter() - t, 1)
        row[label] = side(paths[label])
        peaks[f"export {label}"] = _peak_gib()
        print(f"{name}: exported {label} ({peaks})", flush=True)
    if base == "sd15-unet":
        row["apple_v2"] = apple_v2_counts(model.config, args.unet_sample)
    for label, m in (("as_is", None), ("rewritten", fast)):
        if label not in paths:  # the base row's as-is side, executed there
            continue
        if args.no_execute:
            row[label]["executed_fp32"] = "skipped: --no-execute"
            continue
        t = time.perf_counter()
        executed = ane_rewrite.verify(model, paths[label], example, draws=1, source=m)
        row[label]["executed_fp32"] = round(executed.psnr, 1)
        row[label]["executed_s"] = round(time.perf_counter() - t, 1)
        peaks[f"executed {label}"] = _peak_gib()
    row["wall_s"] = round(time.perf_counter() - start, 1)
    row["peak_rss_gib"] = _peak_gib()
    (out / f"{name}.json").write_text(json.dumps(row, indent=1, default=str))
    return row


ROWS = [("ops (non-const)", "ops"), ("transpose", "transpose"), ("rank-5 values", "rank5"), ("largest rank", "max_rank"),
        ("linear", "linear"), ("conv", "conv"), ("einsum", "einsum"), ("matmul", "matmul"), ("softmax", "softmax"),
        ("layer_norm", "layer_norm"), ("reshape/expand/squeeze", "reshape")]


def _cell(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def _forms(side: dict) -> str:
    return "; ".join(f"{k} ×{v}" for k, v in side["softmax_forms"].items())


def table(row: dict) -> list[str]:
    a, r, apple = row["as_is"], row["rewritten"], row.get("apple_v2")
    mine = {"einsum": "einsum", "softmax": "softmax", "max_rank": "max_rank", "transpose": "k_transposes"}
    lines = ["| MIL program | as is | rewritten |" + (" Apple SPLIT_EINSUM_V2, same config (from its form) |" if apple else ""),
             "|---|---|---|" + ("---|" if apple else "")]
    for label, key in ROWS:
        extra = f" {'≥ ' if key == 'transpose' else ''}{apple[mine[key]]} |" if apple and key in mine else " – |"
        lines.append(f"| {label} | {a[key]} | {r[key]} |" + (extra if apple else ""))
    lines.append(f"| softmax forms | {_forms(a)} | {_forms(r)} |" + (f" axis {apple['softmax_axis']} ×{apple['softmax']} |" if apple else ""))
    for chip in r["estimates"]:
        b, n = a["estimates"][chip]["latency_ms"], r["estimates"][chip]["latency_ms"]
        lines.append(f"| est. {chip} ms (±35 %) | {b:.1f} | {n:.1f} ({b / n:.2f}×) |" + (" – |" if apple else ""))
    lines.append(f"| executed fp32 PSNR dB | {_cell(a['executed_fp32'])} | {_cell(r['executed_fp32'])} |" + (" – |" if apple else ""))
    return lines


def against_apple(row: dict) -> list[str]:
    """The rewritten UNet's attention beside SPLIT_EINSUM_V2's, in words, from the figures."""
    r, apple, passes = row["rewritten"], row["apple_v2"], row["passes"]
    per_head = passes.get("attention", {}).get("sdpa_per_head", 0)
    keys_first = sum(v for k, v in r["softmax_forms"].items() if k.startswith("axis 1 of"))
    return [f"Against SPLIT_EINSUM_V2: {per_head} of the {apple['attentions']} attentions per head (Apple: all), "
            f"{keys_first} softmaxes over the key axis of (1, K, 1, Q) (Apple: {apple['softmax']}), {r['softmax'] - keys_first} "
            f"left on the last axis of batched (1, heads, Q, K) scores; {r['einsum']} einsums (Apple: {apple['einsum']}), "
            f"{r['matmul']} matmuls; {r['transpose']} transposes (Apple: at least its {apple['k_transposes']} K transposes); "
            f"{r['layer_norm']} `layer_norm` ops: {passes.get('layer_norm', {}).get('channel_layer_norm', 0)} "
            f"layer norms over channels and {passes.get('group_norm', {}).get('group_norm_rank4', 0)} GroupNorms at rank 4 (Apple: "
            f"LayerNormANE's mean / rsqrt ops over dim 1, GroupNorm as torch's); largest rank {r['max_rank']} (Apple: 4).", ""]


def write_page(rows: list[dict], out: Path, command: str) -> None:
    lines = ["# Diffusion at realistic widths: an SD-1.5 UNet and an SD3-class DiT", "",
             f"`{command}` ({platform.machine()}, 2 torch threads; each model in a process of its own, one at a "
             "time; the command of each row under its heading)", ""]
    for row in rows:
        a, r = row["as_is"], row["rewritten"]
        ups = [a["estimates"][c]["latency_ms"] / r["estimates"][c]["latency_ms"] for c in r["estimates"]]
        lines.append(f"- **{row['model']}** ({row['params_m']} M parameters): rewrite PSNR {row['psnr_db']} dB; transposes "
                     f"{a['transpose']} → {r['transpose']}, rank-5 values {a['rank5']} → {r['rank5']}, linear {a['linear']} → "
                     f"{r['linear']}, softmax {a['softmax']} → {r['softmax']}; est. speed-up {min(ups):.2f}–{max(ups):.2f}×, beyond "
                     f"the ±35 % band (1.35×) on {sum(u > 1.35 for u in ups)}/{len(ups)} chips; {row['wall_s'] / 60:.1f} min, peak RSS {row['peak_rss_gib']} GiB.")
    lines += ["", "| model | parameters (M) | rewrite PSNR dB | est. A15 ms as is → rewritten | executed fp32 dB as is / rewritten "
              "| min | peak RSS GiB |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {w['model']} | {w['params_m']} | {w['psnr_db']} | {w['as_is']['estimates']['A15']['latency_ms']:.1f} → "
              f"{w['rewritten']['estimates']['A15']['latency_ms']:.1f} | {_cell(w['as_is']['executed_fp32'])} / "
              f"{_cell(w['rewritten']['executed_fp32'])} | {w['wall_s'] / 60:.1f} | {w['peak_rss_gib']} |" for w in rows] + [""]
    for row in rows:
        reasons = row["left_batched_reasons"]
        lines += [f"## {row['model']}", "", row["what"] + ".", "", f"`{row['command']}`", "",
                  f"optimize {row['optimize_s']} s, export as is {row['export_as_is_s']} s"
                  + (f" (the {row['as_is_from']} row's)" if "as_is_from" in row else "")
                  + f", rewritten {row['export_rewritten_s']} s; passes rolled back: {len(row['rolled_back'])}; "
                  f"attentions left batched by the latency model: {row['left_batched']}"
                  + (f" (e.g. {reasons[0]})" if reasons else ""), ""]
        lines += table(row) + [""] + (against_apple(row) if "apple_v2" in row else [])
    lines += ["#" + ANCHOR.read_text().rstrip()]
    out.joinpath("results.md").write_text("\n".join(lines) + "\n")


ANCHOR = ROOT / "benchmarks" / "published" / "ml_stable_diffusion_form.md"  # the facts, with their files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--packages", type=Path, default=Path("/tmp/diffusion_rows"), help="where the exports go")
    parser.add_argument("--unet-sample", type=int, default=32, help="UNet latent side (SD 1.5: 64)")
    parser.add_argument("--dit-sample", type=int, default=32, help="DiT latent side")
    parser.add_argument("--dit-layers", type=int, default=4, help="DiT layers (SD3-medium: 24)")
    parser.add_argument("--no-execute", action="store_true", help="export and estimate only")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one model
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.packages.mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args.one, args, args.out)
        return 0
    flags = [f"--unet-sample={args.unet_sample}", f"--dit-sample={args.dit_sample}", f"--dit-layers={args.dit_layers}",
             f"--out={args.out}", f"--packages={args.packages}"] + (["--no-execute"] if args.no_execute else [])
    code = 0
    for name in args.models:
        print(f"{name} …", flush=True)
        done = subprocess.run([sys.executable, __file__, "--one", name, *flags])
        code |= done.returncode
    rows = [json.loads((args.out / f"{n}.json").read_text()) for n in MODELS if (args.out / f"{n}.json").exists()]
    write_page(rows, args.out, "python benchmarks/diffusion_rows.py")
    print((args.out / "results.md").read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
