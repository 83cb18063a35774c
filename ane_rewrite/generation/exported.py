"""A rewritten causal LM as one Core ML package, and generation by executing that package here.

    export_lm(lm, path)  → path.mlpackage: functions prefill (input_ids (1, prefill_len), position (1,))
                           and decode (input_ids (1, 1), position (1,)), one output (logits), the
                           caches k_cache_i, v_cache_i (1, C, 1, max_len) as states shared by both;
                           weights stored once; iOS 18 (states)
    generate_exported(path, input_ids, max_new_tokens) → the greedy tokens of that package, its
                           functions run by ane_rewrite.runtime (fp32 or fp16), states kept
                           across calls as the Core ML runtime keeps them

Weights over ``max_chunk_bytes`` (1 GB: what one file on iOS loads) are cut into chunk packages
``<stem>_1of3.mlpackage`` … that run in sequence, each with the prefill and decode functions of
the same layers and their caches (``chunks.py``); ``export`` returns the paths written, and
``generate_exported`` takes the first of them (or the list) and runs them all.

Each package records in its metadata what generation needs besides the program: the
end-of-sequence ids, the pad id and its place in the chain (``ane_rewrite.eos``,
``ane_rewrite.pad``, ``ane_rewrite.chunk`` "k/n").
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..coreml.export import export, save_multifunction
from ..coreml.saving import check_path
from ..errors import ExecutionError, InputError
from ..hardware import MAX_WEIGHTS_BYTES
from . import chunks
from .greedy import greedy
from .stateful import stateful_graph

FUNCTIONS = ("prefill", "decode")


def _example(graph) -> tuple:
    return tuple(n.meta["val"] for n in graph.graph.nodes if n.op == "placeholder")


def chunk_paths(path: Path, count: int) -> list[Path]:
    return [path] if count == 1 else [path.with_name(f"{path.stem}_{k + 1}of{count}.mlpackage") for k in range(count)]


def export_lm(lm, path, *, precision: str = "fp16", overwrite: bool = False, progress: bool = False,
              max_chunk_bytes: int = MAX_WEIGHTS_BYTES) -> list[Path]:
    path = Path(path)
    graphs = {"prefill": stateful_graph(lm.prefill), "decode": stateful_graph(lm.decode)}
    plan = chunks.plan(graphs["decode"][0], max_chunk_bytes, 2 if precision == "fp16" else 4)
    paths = chunk_paths(path, len(plan))
    for p in paths:
        check_path(p, overwrite)
    parts = {}
    for name, (graph, states) in graphs.items():
        cuts = chunks.cut_positions(graph, plan)
        parts[name] = chunks.split(graph, cuts, states) if cuts else [(graph, states)]
    for k, p in enumerate(paths):
        converted = {name: export(parts[name][k][0], _example(parts[name][k][0]), progress=progress,
                                  states=parts[name][k][1], precision=precision) for name in FUNCTIONS}
        metadata = {"ane_rewrite.eos": json.dumps(sorted(lm.eos)), "ane_rewrite.pad": str(lm.pad_id),
                    "ane_rewrite.chunk": f"{k + 1}/{len(paths)}"}
        save_multifunction(converted, p, default="decode", overwrite=overwrite, metadata=metadata, progress=progress)
    return paths


def _metadata(path) -> dict:
    import coremltools as ct

    meta = ct.models.MLModel(str(path), skip_model_load=True).get_spec().description.metadata.userDefined
    if "ane_rewrite.eos" not in meta:
        raise ExecutionError(f"{path} was not written by CausalLM.export (no ane_rewrite.eos metadata)")
    return {"eos": set(json.loads(meta["ane_rewrite.eos"])), "pad": int(meta["ane_rewrite.pad"]),
            "chunk": meta.get("ane_rewrite.chunk", "1/1")}


def _chain(path) -> list[tuple[Path, dict]]:
    """The packages to run in order, each with its metadata: the one given, or every chunk of the
    chain it starts."""
    if isinstance(path, (list, tuple)):
        return [(Path(p), _metadata(p)) for p in path]
    path = Path(path)
    if not path.exists():
        raise ExecutionError(f"no Core ML model at {path}")
    first = _metadata(path)
    count = int(first["chunk"].split("/")[1])
    if count == 1:
        return [(path, first)]
    stem = path.stem.rsplit("_1of", 1)[0]
    rest = chunk_paths(path.with_name(f"{stem}.mlpackage"), count)[1:]
    return [(path, first)] + [(p, _metadata(p)) for p in rest]


def generate_exported(path, input_ids: torch.Tensor, max_new_tokens: int = 32, precision: str = "fp32") -> torch.Tensor:
    """Greedy tokens of an exported causal LM (``CausalLM.export``: one package, or the first of
    its chunks, or the list of them), executed on this machine."""
    from ..runtime import load

    paths, metas = zip(*_chain(path))
    if [m["chunk"] for m in metas] != [f"{k + 1}/{len(paths)}" for k in range(len(paths))]:
        raise InputError(f"{[str(p) for p in paths]} are chunks {[m['chunk'] for m in metas]}, not one chain in order")
    chain = [{name: load(p, name) for name in FUNCTIONS} for p in paths]
    states = []
    for functions, p in zip(chain, paths):
        states.append(functions["decode"].new_states())
        if set(states[-1]) != set(functions["prefill"].state_names):
            raise ExecutionError(f"{p}: prefill and decode do not share their states")
    prefill_len = chain[0]["prefill"].compiled.inputs["input_ids"].shape[1]
    max_len = next(s for chunk in states for s in chunk.values()).shape[-1]

    def step(kind, ids, position):
        values = {"input_ids": ids.to(torch.int32), "position": torch.tensor([position], dtype=torch.int32)}
        for functions, chunk_states in zip(chain, states):
            exe = functions[kind]
            out = exe.run({n: values[n] for n in exe.input_names}, precision, states=chunk_states)
            values.update(out)
        return out[chain[-1][kind].output_names[0]].float()

    return greedy(step, input_ids, max_new_tokens, prefill_len, max_len, metas[0]["eos"], metas[0]["pad"])
