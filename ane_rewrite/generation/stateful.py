"""The KV cache as Core ML state: a rewritten step's graph, its caches written in place.

    step(input_ids, position, k₀, v₀, …) → (logits, k₀new_BC1T, v₀new_BC1T, …)        (lm.py's form)
        → step(input_ids, position; states k₀, v₀, …) → logits,
          kᵢ ← cache_write(kᵢ, kᵢnew_BC1T, position)   each right after its new value

``cache_write(cache_BC1L, update_BC1T, position)`` is the cache with slots position … position + T − 1
replaced by the update (``torch.ops.ane_rewrite.cache_write``); coremltools converts it
(``coreml/compat.py``) to one ``slice_update`` with a begin computed from the position, so the
runtime writes only the step's slots, and the cache inputs become states (``program.py``): read
in place, never copied across the model's boundary.

Each write sits right after the value it writes, not at the end of the graph: coremltools'
``canonicalize_inplace_pattern`` pass fails (KeyError) when a state's new value is the op
just before the state updates it appends at the end (measured on coremltools 9.0).
"""
from __future__ import annotations

import copy

import torch
from torch.fx import GraphModule, Node


@torch.library.custom_op("ane_rewrite::cache_write", mutates_args=())
def cache_write(cache: torch.Tensor, update: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """``cache`` with its last-axis slots position … position + T − 1 replaced by ``update``."""
    start = int(position.reshape(-1)[0])
    out = cache.clone()
    out[..., start:start + update.shape[-1]] = update
    return out


@cache_write.register_fake
def _(cache, update, position):
    return torch.empty_like(cache)


def is_cache_write(node: Node) -> bool:
    return node.op == "call_function" and node.target is torch.ops.ane_rewrite.cache_write.default


def state_names(count: int) -> list[str]:
    """k_cache_0, v_cache_0, k_cache_1, …: the states of ``count`` cache inputs (k, v per attention)."""
    return [f"{'kv'[i % 2]}_cache_{i // 2}" for i in range(count)]


def stateful_graph(step: GraphModule) -> tuple[GraphModule, dict[str, tuple[str, int]]]:
    """A copy of ``step`` whose outputs after the logits are the written caches, and the
    ``states`` map ``program.exported_program`` takes: {cache input: (state name, output index)}."""
    gm = copy.deepcopy(step)
    graph = gm.graph
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    position, caches = inputs[1], inputs[2:]
    output = next(n for n in graph.nodes if n.op == "output")
    logits, *new = output.args[0]
    written = []
    for cache, value in zip(caches, new):
        with graph.inserting_after(value):
            write = graph.call_function(torch.ops.ane_rewrite.cache_write.default, (cache, value, position))
        write.meta["val"] = cache.meta["val"]
        written.append(write)
    output.args = ((logits, *written),)
    gm.recompile()
    names = state_names(len(caches))
    return gm, {cache.name: (name, i + 1) for i, (cache, name) in enumerate(zip(caches, names))}
