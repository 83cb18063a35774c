"""Rules, passes and what they report.

A ``Rule`` is ``(name, anchors, match, rewrite)``. ``match(node)`` answers with a
``MatchResult``: bindings (the rule applies), a *reason* (a candidate the rule declines; it is
reported, with its kind: ``STRUCTURE``, the graph is not the pattern's, or ``COST``, the
rewrite would not pay), or ``skip`` (not a candidate at all). ``rewrite(rw, node, bindings)`` builds the
replacement with the ``Rewriter`` and returns the node that takes the anchor's place.

A ``Pass`` applies its rules to a fixpoint, then removes dead code, and returns a
``PassResult``: counts per rule and every declined candidate with its reason. Nodes a rule
creates carry ``meta["ane_rule"]``; the node that replaces an anchor carries
``meta["ane_origin"]`` (the anchor's name), which the equivalence checker follows.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch.fx import GraphModule, Node

from ..errors import RewriteError
from .graph import aten, fake_mode_of, infer_val

MAX_SWEEPS = 200
STRUCTURE = "structure"  # a decline's kind: the graph is not a form the rule can rewrite safely
COST = "cost"            # a decline's kind: the rewrite is possible but estimated not to pay


@dataclass(frozen=True)
class MatchResult:
    bindings: dict | None = None
    reason: str | None = None
    kind: str = STRUCTURE

    @classmethod
    def ok(cls, **bindings) -> "MatchResult":
        return cls(bindings=bindings)

    @classmethod
    def fail(cls, reason: str, kind: str = STRUCTURE) -> "MatchResult":
        if kind not in (STRUCTURE, COST):
            raise ValueError(f"a decline's kind is {STRUCTURE!r} or {COST!r}, not {kind!r}")
        return cls(reason=reason, kind=kind)

    @classmethod
    def skip(cls) -> "MatchResult":
        return cls()

    @property
    def matched(self) -> bool:
        return self.bindings is not None

    @property
    def declined(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class Rule:
    name: str
    anchors: tuple | None  # ATen overloads or packets a candidate is rooted at; None: any call
    match: Callable[[Node], MatchResult]
    rewrite: Callable[["Rewriter", Node, dict], Node]
    doc: str = ""

    def is_anchor(self, node: Node) -> bool:
        if node.op != "call_function":
            return False
        if self.anchors is None:
            return True
        packet = getattr(node.target, "overloadpacket", None)
        return any(node.target is a or packet is a for a in self.anchors)


@dataclass(frozen=True)
class Declined:
    rule: str
    node: str
    reason: str
    kind: str = STRUCTURE

    def __str__(self) -> str:
        return f"{self.rule} declined {self.node}: {self.reason}"


@dataclass
class PassResult:
    name: str
    counts: Counter = field(default_factory=Counter)
    declined: list[Declined] = field(default_factory=list)
    rolled_back: str | None = None  # safe mode undid the pass: why (see rewrite/pipeline.py)
    undone: Counter = field(default_factory=Counter)  # what it had done before it was undone

    @property
    def changed(self) -> bool:
        return sum(self.counts.values()) > 0

    def roll_back(self, reason: str) -> None:
        self.undone, self.counts, self.rolled_back = self.counts, Counter(), reason

    def summary(self) -> str:
        if self.rolled_back is not None:
            undone = ", ".join(f"{r} {c}" for r, c in sorted(self.undone.items())) or "nothing"
            return f"{self.name}: ROLLED BACK ({undone} undone): {self.rolled_back}"
        fired = ", ".join(f"{r} {c}" for r, c in sorted(self.counts.items())) or "no change"
        return f"{self.name}: {fired}"

    def __str__(self) -> str:
        lines = [self.summary()]
        lines += [f"  {d}" for d in self.declined]
        return "\n".join(lines)


class Rewriter:
    """Inserts the nodes of one rewrite before its anchor, with values and provenance.

    A call equal to one already computed before the anchor (same op, same arguments) is not
    inserted again: the existing node is returned, so conversions are shared, not repeated.
    """

    def __init__(self, gm: GraphModule, anchor: Node, rule: str):
        self.gm = gm
        self.anchor = anchor
        self.rule = rule

    def call(self, target, *args, **kwargs) -> Node:
        existing = self._existing(target, args, kwargs)
        if existing is not None:
            return existing
        with self.gm.graph.inserting_before(self.anchor):
            node = self.gm.graph.call_function(target, tuple(args), dict(kwargs))
        node.meta["val"] = infer_val(self.gm, target, node.args, node.kwargs)
        node.meta["ane_rule"] = self.rule
        for key in ("nn_module_stack", "stack_trace"):
            if key in self.anchor.meta:
                node.meta[key] = self.anchor.meta[key]
        return node

    def constant(self, hint: str, value: torch.Tensor) -> Node:
        """A constant tensor as a non-persistent buffer (not in the state dict), shared when an
        equal one was registered before."""
        for name, buf in self.gm.named_buffers(recurse=False):
            if name.startswith("_ane_") and buf.shape == value.shape and buf.dtype == value.dtype \
                    and torch.equal(buf, value):
                break
        else:
            name = f"_ane_{hint}_{sum(1 for n, _ in self.gm.named_buffers(recurse=False) if n.startswith('_ane_'))}"
            self.gm.register_buffer(name, value, persistent=False)
        for node in self.gm.graph.nodes:
            if node.op == "get_attr" and node.target == name and node < self.anchor:
                return node
        with self.gm.graph.inserting_before(self.anchor):
            node = self.gm.graph.get_attr(name)
        node.meta["val"] = fake_mode_of(self.gm).from_tensor(value, static_shapes=True)
        node.meta["ane_rule"] = self.rule
        return node

    def _existing(self, target, args: tuple, kwargs: dict) -> Node | None:
        first = next((a for a in args if isinstance(a, Node)), None)
        if first is None:
            return None
        for user in first.users:
            if (user.op == "call_function" and user.target is target and user < self.anchor
                    and list(user.args) == list(args) and dict(user.kwargs) == kwargs):
                return user
        return None


def _same_value_type(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype
    return type(a) is type(b)


class Pass:
    """A named set of rules applied to a fixpoint over a graph module."""

    def __init__(self, name: str, rules: Iterable[Rule], doc: str = ""):
        self.name = name
        self.rules = tuple(rules)
        self.doc = doc

    def __call__(self, gm: GraphModule) -> PassResult:
        result = PassResult(self.name)
        for _ in range(MAX_SWEEPS):
            declined: dict[tuple[str, str], MatchResult] = {}
            fired = False
            for node in list(gm.graph.nodes):
                if getattr(node, "_erased", False) or not node.users:
                    continue  # erased by an earlier rewrite, or dead: left for dead-code removal
                for rule in self.rules:
                    if not rule.is_anchor(node):
                        continue
                    m = rule.match(node)
                    if m.declined:
                        declined[(rule.name, node.name)] = m
                    if not m.matched:
                        continue
                    self._apply(gm, rule, node, m.bindings)
                    result.counts[rule.name] += 1
                    fired = True
                    break
            if not fired:
                result.declined = [Declined(r, n, m.reason, m.kind) for (r, n), m in declined.items()]
                break
        else:
            raise RewriteError(f"pass {self.name} did not reach a fixpoint in {MAX_SWEEPS} sweeps")
        _eliminate_dead_code(gm)
        gm.recompile()
        return result

    @staticmethod
    def _apply(gm: GraphModule, rule: Rule, node: Node, bindings: dict) -> None:
        rw = Rewriter(gm, node, rule.name)
        new = rule.rewrite(rw, node, bindings)
        if not _same_value_type(new.meta.get("val"), node.meta.get("val")):
            raise RewriteError(
                f"rule {rule.name} replaced {node.name} {tuple(node.meta['val'].shape)} "
                f"with a value of another shape or dtype {getattr(new.meta.get('val'), 'shape', None)}"
            )
        if new.meta.get("ane_rule") == rule.name and "ane_origin" not in new.meta:
            new.meta["ane_origin"] = node.meta.get("ane_origin", node.name)
        node.replace_all_uses_with(new)
        if not node.users:
            _erase_with_dead_inputs(gm, node)


def _erase_with_dead_inputs(gm: GraphModule, node: Node) -> None:
    """Erase a replaced node and the pure computations only it read, at once: the rules that
    ask how many readers a value has must not count the dead ones."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.users or getattr(n, "_erased", False):
            continue
        inputs = n.all_input_nodes
        gm.graph.erase_node(n)
        stack.extend(i for i in inputs if i.op == "call_function" and not i.is_impure())


def _eliminate_dead_code(gm: GraphModule) -> None:
    """Dead code, including metadata asserts whose tensor nothing else reads (a capture leaves
    them on mask-builder values that a rewrite made dead)."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is aten._assert_tensor_metadata.default:
            checked = node.args[0]
            if isinstance(checked, Node) and all(u.target is aten._assert_tensor_metadata.default
                                                for u in checked.users):
                gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()

