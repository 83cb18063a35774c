"""A rewritten causal LM as one Core ML package, and generation by executing that package here.

    export_lm(lm, path)  → path.mlpackage: functions prefill (input_ids (1, prefill_len), position (1,))
                           and decode (input_ids (1, 1), position (1,)), one output (logits), the
                           caches k_cache_i, v_cache_i (1, C, 1, max_len) as states shared by both;
                           weights stored once; iOS 18 (states)
    generate_exported(path, input_ids, max_new_tokens) → the greedy tokens of that package, its
                           functions run by ane_rewrite.runtime (fp32 or fp16), states kept
                           across calls as the Core ML runtime keeps them

The package records in its metadata what generation needs besides the program: the
end-of-sequence ids and the pad id (``ane_rewrite.eos``, ``ane_rewrite.pad``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..coreml.export import export, save_multifunction
from ..errors import ExecutionError
from .stateful import stateful_graph

FUNCTIONS = ("prefill", "decode")


def export_lm(lm, path, *, precision: str = "fp16", overwrite: bool = False, progress: bool = False) -> None:
    parts = {}
    for name, step in (("prefill", lm.prefill), ("decode", lm.decode)):
        graph, states = stateful_graph(step)
        example = tuple(n.meta["val"] for n in graph.graph.nodes if n.op == "placeholder")
        parts[name] = export(graph, example, progress=progress, states=states, precision=precision)
    metadata = {"ane_rewrite.eos": json.dumps(sorted(lm.eos)), "ane_rewrite.pad": str(lm.pad_id)}
    save_multifunction(parts, path, default="decode", overwrite=overwrite, metadata=metadata)


def _metadata(path) -> tuple[set[int], int]:
    import coremltools as ct

    meta = ct.models.MLModel(str(path), skip_model_load=True).get_spec().description.metadata.userDefined
    if "ane_rewrite.eos" not in meta:
        raise ExecutionError(f"{path} was not written by CausalLM.export (no ane_rewrite.eos metadata)")
    return set(json.loads(meta["ane_rewrite.eos"])), int(meta["ane_rewrite.pad"])


def generate_exported(path, input_ids: torch.Tensor, max_new_tokens: int = 32, precision: str = "fp32") -> torch.Tensor:
    """Greedy tokens of an exported causal LM (``CausalLM.export``), executed on this machine."""
    from ..runtime import load
    from .lm import greedy

    path = Path(path)
    functions = {name: load(path, name) for name in FUNCTIONS}
    eos, pad = _metadata(path)
    states = functions["decode"].new_states()
    if set(states) != set(functions["prefill"].state_names):
        raise ExecutionError(f"{path}: prefill and decode do not share their states")
    prefill_len = functions["prefill"].compiled.inputs["input_ids"].shape[1]
    max_len = next(iter(states.values())).shape[-1]

    def step(kind, ids, position):
        out = functions[kind].run({"input_ids": ids.to(torch.int32), "position": torch.tensor([position], dtype=torch.int32)},
                                  precision, states=states)
        return next(iter(out.values())).float()

    return greedy(step, input_ids, max_new_tokens, prefill_len, max_len, eos, pad)
