"""A graph module's state before a pass, to roll the pass back.

A pass changes a graph module in two ways only: its graph (nodes, their metadata) and the
constants it registers as non-persistent buffers (``Rewriter.constant``); parameters and
existing buffers are never written. A snapshot therefore holds a copy of the graph (node
metadata is copied per node, values shared) and the names of the buffers that existed;
``restore`` puts the graph back, drops the buffers the pass added, and recompiles.
"""
from __future__ import annotations

import copy

from torch.fx import GraphModule


class Snapshot:
    def __init__(self, gm: GraphModule):
        self.graph = copy.deepcopy(gm.graph)
        self.buffers = {name for name, _ in gm.named_buffers(recurse=False)}
        self.meta = dict(gm.meta)

    def module(self, gm: GraphModule) -> GraphModule:
        """A graph module computing the snapshot's graph with ``gm``'s weights (shared)."""
        out = GraphModule(gm, copy.deepcopy(self.graph))
        out.meta.update(self.meta)
        return out

    def restore(self, gm: GraphModule) -> None:
        for name, _ in list(gm.named_buffers(recurse=False)):
            if name not in self.buffers:
                delattr(gm, name)
        gm.graph = copy.deepcopy(self.graph)
        gm.meta.clear()
        gm.meta.update(self.meta)
        gm.recompile()
