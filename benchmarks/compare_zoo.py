"""Baseline vs rewritten over a zoo of models: optimize and export times, the analyzer's metrics
and estimates for both exports, PyTorch CPU latency of both, and both saved packages executed
(ane_rewrite.runtime, fp32 and fp16) against the PyTorch model: PSNR pooled over draws.

    python benchmarks/compare_zoo.py [--models NAME ...] [--out benchmarks/results] [--runs 5]

Random weights from configs (nothing downloaded). Writes ``results.json``, ``results.md`` (a
table with a headline) and PNG plots (estimated ANE and PyTorch CPU latency, baseline next to
rewritten). A failing model is recorded with its error, not skipped. "est." latencies are the
analyzer's estimates (analysis/estimate.py), not device measurements; CPU ones are measured here.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_decisions import decisions_changed  # noqa: E402
from zoo_plots import plot  # noqa: E402
from zoo_table import table  # noqa: E402
from zoo_specs import FAMILIES, hf_spec as _hf, timm_spec as _timm  # noqa: E402

CHIP = "A15"


ZOO = {
    "distilbert-base": _hf("DistilBertForSequenceClassification", 128),
    "bert-base": _hf("BertForSequenceClassification", 128),
    "bert-mini": _hf("BertForSequenceClassification", 128, num_hidden_layers=4, hidden_size=256,
                     num_attention_heads=4, intermediate_size=1024),
    "roberta-base": _hf("RobertaForSequenceClassification", 128),
    "distilgpt2": _hf("GPT2LMHeadModel", 128, n_layer=6),
    "clip-text-base": _hf("CLIPTextModel", 77),
    "vit-tiny": _timm("vit_tiny_patch16_224"),
    "vit-base": _timm("vit_base_patch16_224"),
    "deit-tiny": _timm("deit_tiny_patch16_224"),
    "swin-tiny": _timm("swin_tiny_patch4_window7_224"),
    "convnext-atto": _timm("convnext_atto"),
    "convnext-tiny": _timm("convnext_tiny"),
    "maxvit-pico": _timm("maxvit_pico_rw_256"),
    "efficientformer-l1": _timm("efficientformer_l1"),
    "mobilevit-xxs": _timm("mobilevit_xxs"),
    "eva02-base-2l": _timm("eva02_base_patch14_224", depth=2),  # a rope ViT (issue 12), 2 of its 12 blocks
    "levit-128s": _timm("levit_128s"),  # attention-bias tables, Linear + BatchNorm1d (issue 13)
    "swinv2-tiny-w8": _timm("swinv2_tiny_window8_256"),  # scaled cosine attention, run-time bias MLP
    # today's decoders and encoders (issue 12) at a realistic width: 2 layers, hidden ≥ 512 with
    # the family's usual head size, vocabulary 32000, seq 128
    **{name: _hf(cls, 128, num_hidden_layers=2, vocab_size=32000, max_position_embeddings=512, pad_token_id=0, **cfg)
       for name, cls, cfg in (
        ("llama-512", "LlamaForCausalLM", dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=4,
                                               intermediate_size=1536)),
        ("qwen2-512", "Qwen2ForCausalLM", dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=2,
                                               intermediate_size=1536)),
        ("qwen3-512", "Qwen3ForCausalLM", dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
                                               head_dim=128, intermediate_size=1536)),
        ("gemma-512", "GemmaForCausalLM", dict(hidden_size=512, num_attention_heads=2, num_key_value_heads=1,
                                               head_dim=256, intermediate_size=2048)),
        ("mistral-512", "MistralForCausalLM", dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
                                                   head_dim=128, intermediate_size=1536)),
        ("phi3-576", "Phi3ForCausalLM", dict(hidden_size=576, num_attention_heads=6, num_key_value_heads=6,
                                             intermediate_size=1536)),
        ("olmo2-512", "Olmo2ForCausalLM", dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=8,
                                               intermediate_size=1536)),
        ("gpt-neox-512", "GPTNeoXForCausalLM", dict(hidden_size=512, num_attention_heads=8, intermediate_size=2048,
                                                    rotary_pct=0.25)),
        ("gpt-j-512", "GPTJForCausalLM", dict(n_embd=512, n_head=8, n_layer=2, rotary_dim=32, n_positions=512)),
        ("falcon-512", "FalconForCausalLM", dict(hidden_size=512, num_attention_heads=8, num_kv_heads=2,
                                                 new_decoder_architecture=True)),
        ("modernbert-512", "ModernBertModel", dict(hidden_size=512, num_attention_heads=8, intermediate_size=1536,
                                                   global_attn_every_n_layers=1)),
        ("bloom-512", "BloomForCausalLM", dict(hidden_size=512, n_head=8)),
        ("albert-512", "AlbertModel", dict(hidden_size=512, num_attention_heads=8, intermediate_size=2048,
                                           embedding_size=128)),
        ("deberta-v2-512", "DebertaV2Model", dict(hidden_size=512, num_attention_heads=8, intermediate_size=2048,
                                                  relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                  position_buckets=256)),
        ("deberta-512", "DebertaModel", dict(hidden_size=512, num_attention_heads=8, intermediate_size=2048,
                                             relative_attention=True, pos_att_type=["p2c", "c2p"],
                                             max_relative_positions=512)),
    )},
    # attention beyond the plain dot product (issue 13): softcapping, ALiBi (above), shared
    # layers (above), bucketed biases and cross-attention; 2 layers (each side), hidden 512
    "gemma2-512": _hf("Gemma2ForCausalLM", 128, attn="eager", num_hidden_layers=2, vocab_size=32000,
                      hidden_size=512, num_attention_heads=2, num_key_value_heads=1, head_dim=256,
                      intermediate_size=2048, attn_logit_softcapping=50.0, pad_token_id=0),
    "t5-512": _hf("T5Model", 128, attn="eager", d_model=512, d_kv=64, num_heads=8, d_ff=2048, num_layers=2,
                  vocab_size=32000),
    "bart-512": _hf("BartModel", 128, d_model=512, encoder_layers=2, decoder_layers=2, encoder_attention_heads=8,
                    decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, vocab_size=32000),
    "whisper-512": _hf("WhisperModel", 128, d_model=512, encoder_layers=2, decoder_layers=2,
                       encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                       decoder_ffn_dim=2048, vocab_size=32000, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                       decoder_start_token_id=1),  # the real 30 s window: 3000 frames, 1500 positions
}


def cpu_latency_ms(model, example, runs: int) -> float:
    import torch

    def call():
        return model(**example) if isinstance(example, dict) else model(*example)

    with torch.inference_mode():
        for _ in range(2):
            call()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _side(a) -> dict:
    m = a.metrics
    return {"ops": m["ops"], "transpose": m["copies"]["transpose"], "reshape_family": m["copies"]["reshape_family"],
            "linear": m["op_mix"].get("linear", 0), "findings": dict(a.by_rule()),
            "largest_tensor_mib": round(m["largest_tensor"]["bytes"] / 2**20, 3),
            "activation_mib_padded": round(m["activation_bytes_padded"] / 2**20, 2),
            "estimates": a.estimates}


def run_one(name: str, spec: dict, workdir: Path, runs: int, execute: bool = True) -> dict:
    import torch

    import ane_rewrite
    from ane_rewrite.frontend import models

    torch.manual_seed(0)
    model = spec["build"]()
    example = models.example_inputs(model, seq_len=spec["seq"] or 128)
    row = {"model": name, "family": spec["family"],
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    t = time.perf_counter()
    fast = ane_rewrite.optimize(model, example)
    row["optimize_s"] = round(time.perf_counter() - t, 2)
    counts = fast.ane_report.counts()
    row["attention_lowered"] = sum(counts.get("attention", {}).get(r, 0) for r in ("sdpa_per_head", "eager_logit_steps"))
    row["declined"] = sum(len(r.declined) for r in fast.ane_report.results)
    from ane_rewrite.rewrite.rules import COST

    # the decisions the latency model takes: attentions left batched because per head would not pay
    row["left_batched"] = sorted({d.reason for r in fast.ane_report.results for d in r.declined if d.kind == COST})
    row["rolled_back"] = [r.summary() for r in fast.ane_report.rolled_back]  # by safe mode
    report = ane_rewrite.verify(model, fast, example, draws=1)
    row["psnr_db"], row["equivalent"] = round(report.psnr, 1), report.ok
    for side, m in (("baseline", model), ("rewritten", fast)):
        t = time.perf_counter()
        try:
            ml = ane_rewrite.export(m, example, workdir / f"{name}_{side}.mlpackage", progress=False, overwrite=True)
        except ane_rewrite.ExportError as exc:  # the model as is: coremltools cannot convert it (rank 6, …)
            if side == "rewritten":
                raise
            row["baseline_not_convertible"] = str(exc)[:400]
            continue
        row[f"export_{side}_s"] = round(time.perf_counter() - t, 2)
        row[side] = _side(ane_rewrite.analyze(ml))
        row[side]["cpu_ms"] = round(cpu_latency_ms(m, example, runs), 2) if execute else None
    sides = ("rewritten",) if "baseline_not_convertible" in row else ("baseline", "rewritten")
    if len(sides) == 2:
        b, r = row["baseline"]["estimates"][CHIP]["latency_ms"], row["rewritten"]["estimates"][CHIP]["latency_ms"]
        row["est_speedup"] = round(b / r, 2)
    if not execute:
        return row
    from ane_rewrite.compare import execute_packages, shipped_ok

    t = time.perf_counter()
    executed = execute_packages(model, fast, example, {side: workdir / f"{name}_{side}.mlpackage"
                                                       for side in sides}, hazards=False)
    row["executed_s"] = round(time.perf_counter() - t, 1)
    row["shipped_ok"] = shipped_ok(executed) if len(sides) == 2 else executed["rewritten"]["fp32"].ok
    for side, reports in executed.items():
        row[side]["executed"] = {p: round(r.psnr, 1) for p, r in reports.items()}
        row[side]["executed_draws"], row[side]["executed_divergence"] = reports["fp32"].draws, reports["fp32"].divergence
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(ZOO) + list(FAMILIES),
                        help="default: the zoo (--set zoo) or the later families (--set families)")
    parser.add_argument("--set", choices=("zoo", "families"), default="zoo",
                        help="families: mixture of experts, rope encoders, gated relative bias, rank-6 "
                             "windows and local attention at a realistic width (benchmarks/zoo_specs.py)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--runs", type=int, default=5, help="timed CPU runs per model and side (median)")
    parser.add_argument("--no-execute", action="store_true", help="rewrite, export and estimate only: no CPU "
                                                                  "timing, no package executed")
    parser.add_argument("--previous", help="the results.json whose decisions this run is compared with "
                                           "(default: the one in --out)")
    args = parser.parse_args(argv)
    specs = {**ZOO, **FAMILIES}
    full = list(ZOO if args.set == "zoo" else FAMILIES)
    args.models = args.models or full
    warnings.filterwarnings("ignore")
    import logging

    import torch
    from tqdm import tqdm

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = Path(args.previous) if args.previous else out / "results.json"
    previous = json.loads(before.read_text())["models"] if before.exists() else []
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ane_zoo_") as tmp:
        bar = tqdm(args.models, desc="zoo", unit="model")
        for name in bar:
            bar.set_postfix_str(name)
            try:
                rows.append(run_one(name, specs[name], Path(tmp), args.runs, execute=not args.no_execute))
            except Exception as exc:  # noqa: BLE001 - recorded in the results, with the cause
                rows.append({"model": name, "family": specs[name]["family"], "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-2000:]})
    total = time.perf_counter() - start
    meta = {"command": "python benchmarks/compare_zoo.py " + " ".join(argv or []), "total_s": round(total, 1),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.python_version()}",
            "torch": torch.__version__, "estimate_chip": CHIP,
            "note": "est. = analytic estimate (ane_rewrite/cost.py), not a device measurement"}
    (out / "results.json").write_text(json.dumps({"meta": meta, "models": rows}, indent=2) + "\n")
    changed = decisions_changed(rows, previous) if args.models == full else []
    (out / "results.md").write_text(f"# Zoo: baseline vs rewritten\n\n`{meta['command'].strip()}` "
                                    f"({meta['machine']}; {total / 60:.1f} min)\n\n" + table(rows, CHIP)
                                    + "\n## Decisions that changed against the previous run\n\n"
                                    + ("\n".join(changed) or "none") + "\n")
    plots = plot(rows, out, CHIP)
    print(table(rows, CHIP))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, " + ", ".join(str(p) for p in plots)
          + f" in {total / 60:.1f} min")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
