"""A pipeline: passes in a declared order, with a lint of the graph after each one.

Constraints are pairs ``(before, after, why)``; the pipeline refuses an order that breaks
one. After every pass the graph is linted (``Graph.lint`` plus: every node whose value
is used has one recorded); a failure names the pass and the passes already run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch.fx import GraphModule

from ..errors import LintError
from .rules import Pass, PassResult


def lint(gm: GraphModule) -> None:
    """``Graph.lint``, a recorded value on every used node, and value semantics: no ``view``
    (capture made every view a reshape; a view would depend on the strides of its input)."""
    gm.graph.lint()
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            raise ValueError(f"node {node.name} is a view (views are reshapes in a rewritten graph)")
        used = bool(node.users)
        if node.op in ("call_function", "get_attr", "placeholder") and used and "val" not in node.meta:
            raise ValueError(f"node {node.name} ({node.target}) is used but has no recorded value")


@dataclass
class PipelineResult:
    results: list[PassResult] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        return {r.name: dict(r.counts) for r in self.results}

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results)


class Pipeline:
    def __init__(self, passes: Iterable[Pass], constraints: Iterable[tuple[str, str, str]] = (),
                 options: dict | None = None):
        self.passes = list(passes)
        self.options = dict(options or {})  # read by rules from the graph module's meta
        self.constraints = list(constraints)
        names = [p.name for p in self.passes]
        for before, after, why in self.constraints:
            if before in names and after in names and names.index(before) > names.index(after):
                raise ValueError(f"pass order {names} breaks a constraint: {before} before {after} ({why})")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def __call__(self, gm: GraphModule) -> PipelineResult:
        out = PipelineResult()
        done: list[str] = []
        gm.meta.update(self.options)
        for p in self.passes:
            with torch.no_grad():
                result = p(gm)
            done.append(p.name)
            try:
                lint(gm)
            except Exception as exc:  # graph lint raises several exception types
                raise LintError(f"graph is malformed after pass {p.name} (passes run: {', '.join(done)}): {exc}") from exc
            out.results.append(result)
        return out
