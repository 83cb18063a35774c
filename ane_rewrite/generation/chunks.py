"""A step graph too heavy for one package, cut into chunks that run in sequence.

One Core ML file over ~1 GB of weights does not load on iOS (docs/ane.md, modern decoders):
hand ports cut the decoder into groups of layers. Here the cut is found in the graph, not by
layer names:

    nodes in program order, each chunk as many as fit ``max_bytes`` of the weights its nodes read
    (a weight read in two chunks — a tied LM head — counts in both), cut where the fewest
    values cross among the places where the chunk holds at least half of what fits: between two
    layers, that is the residual stream and the position tables and masks every layer reads
    chunk k: inputs  = the graph inputs its nodes read + the values earlier chunks computed for it
             outputs = the values later chunks (or the graph's output) read, its caches' writes

Chunk outputs and inputs keep the node's name, so a package's output feeds the next package's
input of the same name. The prefill and decode graphs are cut after the same weights, so each
chunk package holds the same layers (and caches) for both functions.
"""
from __future__ import annotations

import math
import operator

import torch
from torch.fx import Graph, GraphModule, Node

from ..errors import ExportError
from .stateful import is_cache_write


def _weight_bytes(gm: GraphModule, node: Node, element_bytes: int) -> int:
    """The bytes of the tensor a get_attr reads, as the export stores it."""
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        value = operator.attrgetter(node.target)(gm)
    return math.prod(value.shape) * element_bytes if isinstance(value, torch.Tensor) else 0


def _crossings(order: list[Node]) -> list[int]:
    """For each position p (0 … len), how many values computed before p are read at or after it
    (the graph's output counts as after everything; cache writes aside: they are the chunk's own)."""
    index = {n: i for i, n in enumerate(order)}
    delta = [0] * (len(order) + 2)
    for i, n in enumerate(order):
        if is_cache_write(n):
            continue
        last = max([index.get(u, len(order)) for u in n.users] or [i])
        if last > i:
            delta[i + 1] += 1
            delta[last + 1] -= 1
    counts, running = [], 0
    for p in range(len(order) + 1):
        running += delta[p]
        counts.append(running)
    return counts


def plan(gm: GraphModule, max_bytes: int, element_bytes: int = 2) -> list[frozenset[str]]:
    """The weights (get_attr targets) of each chunk, in order; one chunk when all fit."""
    order = _computing(gm)
    crossing = _crossings(order)
    attrs = [[a for a in n.all_input_nodes if a.op == "get_attr"] for n in order]
    sizes = {a.target: _weight_bytes(gm, a, element_bytes) for reads in attrs for a in reads}
    chunks, start = [], 0
    while start < len(order):
        used: set[str] = set()
        end, filled = start, [0]  # filled[i]: bytes read by the nodes start … start + i − 1
        while end < len(order):
            new = {a.target for a in attrs[end]} - used
            if sum(sizes[t] for t in used | new) > max_bytes:
                break
            used |= new
            end += 1
            filled.append(sum(sizes[t] for t in used))
        if end == len(order):
            chunks.append(frozenset(a.target for reads in attrs[start:] for a in reads))
            break
        if end == start:
            heavy = max(attrs[start], key=lambda a: sizes[a.target])
            raise ExportError(f"{order[start].name} reads {heavy.target} ({sizes[heavy.target] / 1e9:.2f} GB): more "
                              f"than a chunk's {max_bytes / 1e9:.2f} GB on its own")
        # cut where the fewest values cross, once the chunk holds at least half of what fits
        candidates = [p for p in range(start + 1, end + 1) if 2 * filled[p - start] >= filled[-1]]
        best = min(candidates, key=lambda p: (crossing[p], -p))
        chunks.append(frozenset(a.target for reads in attrs[start:best] for a in reads))
        start = best
    return chunks


def cut_positions(gm: GraphModule, chunks: list[frozenset[str]]) -> list[int]:
    """Where ``gm``'s nodes are cut so that chunk k reads the weights ``chunks[k]``: at the
    fewest crossing values among the positions that split the weights so."""
    order = _computing(gm)
    crossing = _crossings(order)
    first = {}
    for i, n in enumerate(order):
        for a in n.all_input_nodes:
            if a.op == "get_attr":
                first.setdefault(a.target, i)
    cuts, done = [], set()
    for chunk in chunks[:-1]:
        done |= chunk
        low = max(first[t] for t in done if t in first) + 1
        later = [first[t] for t in first if t not in done]
        high = min(later) if later else len(order)
        if low > high:
            raise ExportError("the prefill and decode graphs read their weights in different orders: "
                              "no cut gives both the same chunks")
        cuts.append(min(range(low, high + 1), key=lambda p: (crossing[p], -p)))
    return cuts


def _computing(gm: GraphModule) -> list[Node]:
    """The nodes that compute (the input guard ``ExportedProgram.module()`` adds is not one)."""
    return [n for n in gm.graph.nodes if n.op == "call_function"]


def split(gm: GraphModule, cuts: list[int], states: dict[str, tuple[str, int]]) -> list[tuple[GraphModule, dict]]:
    """``gm`` (a stateful step: ``stateful.stateful_graph``) cut before the nodes at ``cuts``
    (positions among its computing nodes): per chunk, its graph and its ``states`` map."""
    order = _computing(gm)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    final = list(output.args[0])
    bounds = [0, *cuts, len(order)]
    parts = []
    for k in range(len(bounds) - 1):
        inside = order[bounds[k]:bounds[k + 1]]
        members, later = set(inside), set(order[bounds[k + 1]:])
        external = list(dict.fromkeys(a for n in inside for a in n.all_input_nodes if a not in members))
        graph, env = Graph(), {}
        for a in sorted(external, key=lambda a: a.op != "placeholder" and a.op != "call_function"):
            # graph inputs and values earlier chunks computed become inputs of the same name; weights stay weights
            env[a] = graph.get_attr(a.target) if a.op == "get_attr" else graph.placeholder(a.name)
            env[a].meta = dict(a.meta)
            value = a.meta.get("val")
            if a.op == "call_function" and isinstance(value, torch.Tensor):  # an input is contiguous
                env[a].meta["val"] = torch.empty(tuple(value.shape), dtype=value.dtype)
        for n in inside:
            env[n] = graph.node_copy(n, lambda a: env[a])
        outs = [n for n in inside if any(u in later for u in n.users) or n in final]
        if k == len(bounds) - 2:  # the last chunk returns the step's logits first
            outs = [final[0]] + [n for n in outs if n is not final[0]]
        if final[0] in outs and outs[0] is not final[0]:
            raise ExportError("the step's logits are not computed in its last chunk")
        graph.output(tuple(env[n] for n in outs))
        chunk_states = {n.args[0].name: (states[n.args[0].name][0], i) for i, n in enumerate(outs)
                        if is_cache_write(n) and n.args[0].name in states}
        parts.append((GraphModule(gm, graph), chunk_states))
    return parts
