"""A pipeline: passes in a declared order, with a lint of the graph after each one.

Constraints are pairs ``(before, after, why)``; the pipeline refuses an order that breaks
one. After every pass the graph is linted (``Graph.lint`` plus: every node whose value
is used has one recorded); a failure names the pass and the passes already run.

Safe mode (a ``guard``: ``guard(gm)`` → None when ``gm`` still computes the original function,
else what differs): the outcome is that of checking after every pass — a pass that breaks
equivalence, fails the lint or raises is rolled back (``PassResult.rolled_back`` says why) and
the passes after it run on the graph as it was. It is computed lazily: the passes run, the guard
checks the result once, and only when that check fails does the pipeline start again from the
captured graph with the guard after every pass that changed something. ``strict=True`` raises
(``EquivalenceError``, or the pass's own error) instead of rolling back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch.fx import GraphModule

from ..errors import EquivalenceError, LintError
from .rules import Pass, PassResult
from .snapshot import Snapshot

Guard = Callable[[GraphModule], "str | None"]


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

    @property
    def rolled_back(self) -> list[PassResult]:
        return [r for r in self.results if r.rolled_back is not None]

    def counts(self) -> dict[str, dict[str, int]]:
        return {r.name: dict(r.counts) for r in self.results}

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results)


class Pipeline:
    def __init__(self, passes: Iterable[Pass], constraints: Iterable[tuple[str, str, str]] = (),
                 options: Any = None):
        self.passes = list(passes)
        self.options = options  # what the passes were made from (a record: passes never read it)
        self.constraints = list(constraints)
        names = [p.name for p in self.passes]
        for before, after, why in self.constraints:
            if before in names and after in names and names.index(before) > names.index(after):
                raise ValueError(f"pass order {names} breaks a constraint: {before} before {after} ({why})")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def __call__(self, gm: GraphModule, guard: Guard | None = None, strict: bool = False) -> PipelineResult:
        if guard is None:
            return self._run(gm)
        start = Snapshot(gm)
        try:
            out = self._run(gm)
            problem = guard(gm)
        except Exception as exc:  # a pass that raises is one more way to break: found again below
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return out
        start.restore(gm)
        return self._run(gm, guard, strict)

    def _run(self, gm: GraphModule, guard: Guard | None = None, strict: bool = True) -> PipelineResult:
        out = PipelineResult()
        done: list[str] = []
        for p in self.passes:
            saved = Snapshot(gm) if guard is not None else None
            done.append(p.name)
            try:
                result = self._apply(p, gm, done)
            except Exception as exc:
                if saved is None or strict:
                    raise
                saved.restore(gm)
                result = PassResult(p.name)
                result.roll_back(f"the pass failed: {type(exc).__name__}: {exc}")
                out.results.append(result)
                continue
            problem = guard(gm) if guard is not None and result.changed else None
            if problem is not None:
                if strict:
                    raise EquivalenceError(f"pass {p.name} changed what the model computes: {problem}")
                saved.restore(gm)
                result.roll_back(problem)
            out.results.append(result)
        return out

    @staticmethod
    def _apply(p: Pass, gm: GraphModule, done: list[str]) -> PassResult:
        with torch.no_grad():
            result = p(gm)
        try:
            lint(gm)
        except Exception as exc:  # graph lint raises several exception types
            raise LintError(f"graph is malformed after pass {p.name} (passes run: {', '.join(done)}): {exc}") from exc
        return result
