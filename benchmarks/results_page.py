"""docs/results.md, written from the pages the benchmark scripts wrote, so it cannot drift.

    python benchmarks/results_page.py [--check]

Each entry of ``PAGES`` is a results page a script writes (``benchmarks/results/…``,
``benchmarks/published/results.md``) and what it measures; the page's command and its summary —
the lines above its first table — are copied as they are, with a link to the page. No figure
here is typed by hand. ``--check`` exits 1 when ``docs/results.md`` is not what this writes
(``tests/test_docs.py`` runs the same comparison).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results.md"

PAGES = [
    ("benchmarks/published/results.md", "The latency model against published device measurements",
     "Every scored row of `benchmarks/published/latency.csv` rebuilt, exported as its authors did and "
     "estimated by a fit that never saw its source (leave-one-source-out). Its p90 error is the band "
     "every estimate in this project is printed with; a speed-up is a gain only beyond it."),
    ("benchmarks/results/refit/results.md", "The zoo: baseline vs rewritten",
     "The 37 models of `benchmarks/compare_zoo.py` (transformers and timm, small and base sizes, "
     "today's decoders and encoders, attention families; random weights), rewritten, verified, "
     "exported and estimated. The decoders' estimated gain is their 32000-way LM head, which runs "
     "off the ANE as is and on it rewritten; no scored device measurement checks that, so it is "
     "not claimed."),
    ("benchmarks/results/families/results.md", "Later families at a realistic width",
     "`python benchmarks/compare_zoo.py --set families`: mixture of experts (its baseline transformers' "
     "static batched_mm form, whose gathered expert weights the estimate prices: its speed-up is not a "
     "claim), rope encoders (ESM, DINOv3), gated relative bias (WavLM), xIELU (Apertus), and the "
     "rank-6 partitions and local attention coremltools cannot convert as they are (Twins, Hiera, LongT5), "
     "and attention in other shapes at its real size: cross-covariance (XCiT, EdgeNeXt), separable on "
     "unfolded patches (MobileViT v2), outlook (VOLO, which converts only rewritten), factorised (CoaT), "
     "global-query (GCViT), channel (DaViT), cascaded groups (EfficientViT-M0), SAM2's Hiera."),
    ("benchmarks/results/diffusion/results.md", "Diffusion at realistic widths",
     "An SD-1.5 UNet at its real widths and an SD3-medium-width DiT with fewer layers (random weights), "
     "as is and rewritten, beside the op mix of apple/ml-stable-diffusion's published SPLIT_EINSUM_V2 UNet."),
    ("benchmarks/results/generated_architectures.md", "Generated architectures",
     "Architectures drawn by the property-based strategies of `tests/generated/`, each optimized in "
     "safe mode with every attention lowered and verified over five draws; a rollback counts as a "
     "failure."),
    ("benchmarks/results/executed_families.md", "Attention families, executed",
     "Every family of the decoder and attention-family test suites, both packages executed here "
     "against PyTorch and judged by the command line's bars (`ane_rewrite/compare.py`)."),
    ("benchmarks/results/generation_families.md", "Text generation",
     "`optimize_causal_lm` over the causal-LM families: greedy tokens against Hugging Face's, in "
     "PyTorch and from the executed export."),
    ("benchmarks/results/compression.md", "Compression",
     "The zoo's rewritten packages compressed each way, their weight bytes and executed fp16 PSNR. "
     "Random Gaussian weights are the worst case for a look-up table: these PSNRs are a floor."),
    ("benchmarks/results/decode_step.md", "One decode step of a 1B decoder",
     "A Llama-3.2-1B-shaped decode step against the floor its weight bytes set."),
    ("benchmarks/results/safe_mode_cost.md", "Safe mode's cost", "`optimize` with and without safe mode."),
    ("benchmarks/results/execute_speed.md", "Executing a package here",
     "The interpreter (`ane_rewrite.runtime`) against PyTorch on the CPU."),
]


def summary(page: Path) -> tuple[str, list[str]]:
    """(the page's command line, the lines above its first table but its title and command)."""
    lines = page.read_text().splitlines()
    command, body = "", []
    for line in lines:
        if line.startswith("|"):
            break
        if line.startswith("# "):
            continue
        if not command and line.startswith("`python"):
            command = line
            continue
        body.append(line)
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    return command, body


def render() -> str:
    out = ["# Results", "",
           "Written by `python benchmarks/results_page.py` from the pages the benchmark scripts wrote: "
           "each section is a page's command and summary, as the script printed them, and a link to the "
           "page. Latencies are the latency model's estimates, each within its held-out band of the "
           "device (see [usage](usage.md#estimates-and-their-error-band)), not device measurements.", ""]
    for rel, title, what in PAGES:
        command, body = summary(ROOT / rel)
        link = Path("..") / rel
        out += [f"## {title}", "", what, "", f"{command} — [{rel}]({link.as_posix()})", ""]
        if body:
            out += body + [""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        print("docs/results.md is current" if current == text else "docs/results.md is stale: run benchmarks/results_page.py")
        return 0 if current == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
