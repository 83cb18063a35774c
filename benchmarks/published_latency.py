"""The latency model against published device measurements: rebuild, export, estimate, refit.

    python benchmarks/published_latency.py [--rows ID ...] [--refresh] [--out benchmarks/published]

Each scored row of ``benchmarks/published/latency.csv`` (a published Core ML latency, with its
source) is rebuilt with random weights from its ``rebuild`` (``timm:NAME`` reparameterised as
its authors measured it; ``hf:CLASS:CONFIG``; ``hf-encoder:CLASS:CONFIG``, the model's encoder;
``diffusers:CLASS:CONFIG``; ``module:MODULE:FACTORY``, a graph today's libraries no longer build:
``published_rebuilds.py``), exported with ``ane_rewrite.export`` as it is — or, for a row
measured in an ANE-optimised form, rewritten first by ``ane_rewrite.optimize`` (every attention
per head, as the hand ports do; the row's ``rewrite`` gives the pipeline options that match the
port, e.g. no query chunks for a port that has none), which stands in for the authors' port — and turned into the
latency model's work (``analysis.report.placed_works``; weights counted at the row's
``weight_bits``, as the analyzer counts a palettized package). The work of every row is kept in
``works.json.gz`` (``--refresh`` rebuilds it), so a refit takes a minute, not an hour.

Then ``latency_fit`` fits the model's parameters on all rows and leave-one-source-out, and this
script writes ``fit.json`` (the parameters and the held-out band that ``ane_rewrite.cost``
carries), ``results.md`` (per row: published, held-out estimate, ratio; per source: rank
correlation; the pairs) and ``estimate_vs_published.png`` (log-log, one colour per family).
Needs ``diffusers`` for the diffusion rows (``pip install diffusers``).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency_fit  # noqa: E402

HERE = Path(__file__).resolve().parent / "published"


def read_rows(path: Path = HERE / "latency.csv") -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def row_key(row: dict) -> str:
    """What decides a row's program: the same key, the same work."""
    return "|".join((row["rebuild"], row["rewrite"], row["input_shape"], row["form"], row["weight_bits"]))


def _shape(row: dict) -> tuple[int, ...]:
    return tuple(int(d) for d in row["input_shape"].split("x"))


def _config(spec: str) -> tuple[str, dict]:
    cls, _, config = spec.partition(":")
    return cls, json.loads(config or "{}")


class _Sample(__import__("torch").nn.Module):
    """A diffusers model returning its sample as a tensor (diffusers returns a dataclass)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.model(sample, timestep, encoder_hidden_states, return_dict=False)[0]


def rebuild(row: dict):
    """(model with random weights, example inputs) of a row's ``rebuild`` and ``input_shape``."""
    import torch

    from ane_rewrite.frontend import models

    kind, _, spec = row["rebuild"].partition(":")
    torch.manual_seed(0)
    if kind == "timm":
        import timm
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(timm.create_model(spec, pretrained=False).eval())
        return model, (torch.randn(*_shape(row)),)
    if kind in ("hf", "hf-encoder"):
        import transformers

        name, config = _config(spec)
        cls = getattr(transformers, name)
        cfg = cls.config_class(**config)
        if name.endswith("ForSequenceClassification"):
            cfg.num_labels = 2
        model = cls(cfg).eval()
        if kind == "hf-encoder":
            return model.get_encoder().eval(), (torch.randn(*_shape(row)),)
        batch, seq = _shape(row)
        return model, models.example_inputs(model, seq_len=seq, batch=batch)
    if kind == "diffusers":
        import diffusers

        name, config = _config(spec)
        model = getattr(diffusers, name)(**config).eval()
        batch, channels, h, w = _shape(row)
        text = torch.randn(batch, 77, model.config.cross_attention_dim)
        return _Sample(model).eval(), (torch.randn(batch, channels, h, w), torch.full((batch,), 500.0), text)
    if kind == "module":
        import importlib

        module, _, factory = spec.partition(":")
        return getattr(importlib.import_module(module), factory)(*_shape(row))
    raise ValueError(f"row {row['id']}: cannot rebuild {row['rebuild']!r}")


def program_work(row: dict, directory: Path, reuse: bool = False) -> dict:
    """The row's exported program as the latency model's columns (``cost.as_arrays``); ``reuse``:
    read the package a previous run left in ``directory`` (after a change of the placement rules
    or of the model, nothing needs converting again)."""
    import ane_rewrite
    from ane_rewrite import cost
    from ane_rewrite.analysis import report

    path = directory / f"{row['id']}.mlpackage"
    if not (reuse and path.exists()):
        model, example = rebuild(row)
        if row["form"] == "ane_optimized":
            from ane_rewrite.passes import default_pipeline

            options = {"lower_every_attention": True, **json.loads(row["rewrite"] or "{}")}
            model = ane_rewrite.optimize(model, example, pipeline=default_pipeline(**options))
        ane_rewrite.export(model, example, path, overwrite=True, progress=False)
    columns = cost.as_arrays(report.placed_works(report.load_program(path)))
    columns["weight_bytes"] = columns["weight_bytes"] * int(row["weight_bits"]) / 16
    return {k: v.tolist() for k, v in columns.items()}


def load_works(path: Path = HERE / "works.json.gz") -> dict:
    if not path.exists():
        return {}
    with gzip.open(path, "rt") as f:
        return json.load(f)


def save_works(works: dict, path: Path = HERE / "works.json.gz") -> None:
    with gzip.open(path, "wt") as f:
        json.dump(works, f, separators=(",", ":"))


def columns(work: dict) -> dict[str, np.ndarray]:
    return {k: np.array(v, dtype=np.int8 if k == "kind" else bool if isinstance(v[0] if v else 0.0, bool) else float)
            for k, v in work.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="*", help="row ids to rebuild (default: every scored row)")
    parser.add_argument("--refresh", action="store_true", help="derive again the work of rows already kept")
    parser.add_argument("--packages", help="keep the exported packages here, and reuse those already here "
                                           "(default: a temporary directory)")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from ane_rewrite import quiet

    quiet.install()

    out = Path(args.out)
    rows = [r for r in read_rows() if r["scored"] == "yes"]
    works = load_works()
    todo = [r for r in rows if (args.rows is None or r["id"] in args.rows)
            and (args.refresh or row_key(r) not in works)]
    with tempfile.TemporaryDirectory(prefix="ane_published_") as tmp:
        directory = Path(args.packages or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        done = set()
        for row in todo:
            if row_key(row) in done:  # another row of the same program (a chip, a pair)
                continue
            start = time.time()
            try:
                works[row_key(row)] = program_work(row, directory, reuse=args.packages is not None)
            except Exception as e:  # noqa: BLE001 - a row that cannot be rebuilt is reported, not fatal
                print(f"{row['id']}: FAILED {type(e).__name__}: {e}", flush=True)
                continue
            done.add(row_key(row))
            save_works(works)
            print(f"{row['id']}: {len(works[row_key(row)]['kind'])} ops, {time.time() - start:.0f} s", flush=True)
    ready = [r for r in rows if row_key(r) in works]
    result = latency_fit.evaluate(ready, {row_key(r): columns(works[row_key(r)]) for r in ready}, row_key)
    latency_fit.write(result, out)
    print(latency_fit.summary(result))


if __name__ == "__main__":
    main()
