"""optimize_causal_lm over every causal-LM family of the decoder tests (tests/decoders.py), GPT-2
and Gemma 2 (softcapped, sliding window): greedy tokens against Hugging Face's generate, and
the decode function's form.

    python benchmarks/generation_families.py [--out benchmarks/results] [--tokens 32]

Per family (2 layers, hidden 128, random weights, max_len 64, prefill_len 16): for prompts of
5 and 29 tokens, are the first ``--tokens`` greedy tokens of ``lm.generate`` identical to
``model.generate(do_sample=False)``, and are they again from the exported package (fp16,
``lm.export``) executed here in fp32 (``generate_exported``); in the decode function, linear
ops left, sdpa left, softmaxes (one per head when every attention is per head) and the largest rank.
Writes ``generation_families.json`` and ``.md``; exit status 1 when a row's tokens differ.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cases():
    sys.path.insert(0, str(ROOT))
    from tests import decoders

    cases = {name: (cls, extra) for name, (cls, extra, _, _) in decoders.FAMILIES.items() if "ForCausalLM" in cls}
    cases["gpt2"] = ("GPT2LMHeadModel", dict(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=128))
    cases["gemma2-softcap"] = ("Gemma2ForCausalLM", dict(head_dim=32, sliding_window=8, attn_logit_softcapping=50.0,
                                                          final_logit_softcapping=30.0))
    return decoders.BASE, cases


def run_one(name, cls_name, extra, base, tokens):
    import torch
    import transformers

    import ane_rewrite

    cls = getattr(transformers, cls_name)
    config = cls.config_class(**(extra if name == "gpt2" else dict(base, **extra)))
    config._attn_implementation = "eager" if "softcap" in name else "sdpa"
    torch.manual_seed(0)
    model = cls(config).eval()
    t = time.perf_counter()
    lm = ane_rewrite.optimize_causal_lm(model, max_len=64, prefill_len=16)
    row = {"family": name, "optimize_s": round(time.perf_counter() - t, 1), "identical": [], "executed": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = lm.export(Path(tmp) / "lm.mlpackage")
        for n in (5, 29):
            prompt = torch.randint(3, config.vocab_size, (1, n), generator=torch.Generator().manual_seed(n))
            want = model.generate(prompt, max_new_tokens=tokens, do_sample=False, pad_token_id=0)
            row["identical"].append(bool(torch.equal(lm.generate(prompt, max_new_tokens=tokens), want)))
            row["executed"].append(bool(torch.equal(ane_rewrite.generate_exported(paths[0], prompt, tokens), want)))
    ops = Counter(str(n.target) for n in lm.decode.graph.nodes if n.op == "call_function")
    row.update(linear=sum(v for k, v in ops.items() if "linear" in k),
               sdpa=sum(v for k, v in ops.items() if "scaled_dot_product" in k),
               softmax=sum(v for k, v in ops.items() if "softmax" in k),
               max_rank=max(n.meta["val"].dim() for n in lm.decode.graph.nodes
                            if isinstance(n.meta.get("val"), torch.Tensor)),
               rolled_back=[r.summary() for g in (lm.prefill, lm.decode) for r in g.ane_report.rolled_back])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    base, cases = _cases()
    rows, start = [], time.perf_counter()
    for name, (cls_name, extra) in cases.items():
        try:
            rows.append(run_one(name, cls_name, extra, base, args.tokens))
        except Exception as exc:  # noqa: BLE001 - recorded with the cause
            rows.append({"family": name, "error": f"{type(exc).__name__}: {exc}"})
        print(rows[-1], flush=True)
    total = time.perf_counter() - start
    out = Path(args.out)
    command = "python benchmarks/generation_families.py " + " ".join(argv or sys.argv[1:])
    (out / "generation_families.json").write_text(json.dumps({"command": command.strip(), "total_s": round(total, 1),
                                                             "rows": rows}, indent=2) + "\n")
    lines = [f"# optimize_causal_lm over the causal-LM families\n\n`{command.strip()}` ({total / 60:.1f} min)\n",
             "| family | tokens identical (5, 29-token prompts) | executed export identical | decode: linear | sdpa | "
             "softmax | max rank |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | error: {r['error'][:120]} | | | | | |")
        else:
            lines.append(f"| {r['family']} | {r['identical']} | {r['executed']} | {r['linear']} | {r['sdpa']} | "
                         f"{r['softmax']} | {r['max_rank']} |")
    (out / "generation_families.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(all(r.get("identical", [False]) + r.get("executed", [False])) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
