"""Small helpers over ATen-level ``torch.fx`` graphs: op tests, argument access, values.

Every node of a captured graph carries its value as a FakeTensor in ``node.meta["val"]``;
nodes created by a rule get one too (``infer_val``), so shapes are always known.
"""
from __future__ import annotations

import weakref
from typing import Any, Iterable

import torch
from torch._guards import detect_fake_mode
from torch.fx import GraphModule, Node

aten = torch.ops.aten

# the ATen spellings of a view (a reshape that may copy included)
VIEWS = (aten.view, aten.reshape, aten._unsafe_view)


def is_op(node: Any, *targets) -> bool:
    """True when ``node`` is a call of one of the ATen overloads or overload packets."""
    if not isinstance(node, Node) or node.op != "call_function":
        return False
    packet = getattr(node.target, "overloadpacket", None)
    return any(node.target is t or packet is t for t in targets)


def val(node: Any):
    """The (fake) tensor value of a node, or the literal itself for non-nodes."""
    if isinstance(node, Node):
        return node.meta.get("val")
    return node


def shape(node: Any) -> tuple[int, ...] | None:
    v = val(node)
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


def rank(node: Any) -> int | None:
    s = shape(node)
    return None if s is None else len(s)


def arg(node: Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` (or keyword ``name``) of a call, with the schema default."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def normalize_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def normalize_dims(dims: Iterable[int] | int, ndim: int) -> list[int]:
    if isinstance(dims, int):
        dims = [dims]
    return sorted(normalize_dim(d, ndim) for d in dims)


_FAKE_MODES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def fake_mode_of(gm: GraphModule):
    """The fake mode of the graph's recorded values (found once per graph, then remembered)."""
    mode = _FAKE_MODES.get(gm.graph)
    if mode is None:
        vals = [n.meta["val"] for n in gm.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
        mode = _FAKE_MODES[gm.graph] = detect_fake_mode(vals)
    return mode


def infer_val(gm: GraphModule, target, args: tuple, kwargs: dict):
    """Run ``target`` on the fake values of its arguments; the new node's ``meta["val"]``."""
    mode = fake_mode_of(gm)

    def to_val(a):
        if isinstance(a, Node):
            v = a.meta.get("val")
            if v is None:
                raise ValueError(f"node {a.name} has no recorded value")
            return v
        return a

    fargs = torch.fx.node.map_aggregate(args, to_val)
    fkwargs = torch.fx.node.map_aggregate(kwargs, to_val)
    with mode:
        return target(*fargs, **fkwargs)


def readers(node: Node) -> list[Node]:
    """The users of a node, less the metadata asserts a capture hangs on values."""
    return [u for u in node.users if u.target is not aten._assert_tensor_metadata.default]


def op_counts(gm: GraphModule) -> dict[str, int]:
    """How many times each ATen op is called in the graph, by overload packet name."""
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_function":
            name = getattr(getattr(n.target, "overloadpacket", n.target), "__name__", str(n.target))
            counts[name] = counts.get(name, 0) + 1
    return counts


MAX_STATIC_NODES = 64
MAX_STATIC_ELEMENTS = 1 << 20


def static_value(node: Any) -> torch.Tensor | None:
    """The value of a node that no graph input reaches (an index built from ``arange``, a
    buffer, their arithmetic), computed on the module's own tensors; None when an input reaches
    it, when the sub-graph is larger than ``MAX_STATIC_NODES`` or the value than
    ``MAX_STATIC_ELEMENTS``, or when a node of it cannot be run."""
    if not isinstance(node, Node):
        return None
    order, seen, stack = [], set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder" or (n.op == "call_function" and n.is_impure()) or len(seen) > MAX_STATIC_NODES:
            return None
        if n.op not in ("call_function", "get_attr"):
            return None
        order.append(n)
        stack.extend(n.all_input_nodes)
    module, values = node.graph.owning_module, {}
    for n in sorted(order):
        if n.op == "get_attr":
            value = module
            for part in n.target.split("."):
                value = getattr(value, part, None)
        else:
            args = torch.fx.node.map_arg(n.args, values.__getitem__)
            kwargs = torch.fx.node.map_arg(n.kwargs, values.__getitem__)
            try:
                with torch.no_grad():
                    value = n.target(*args, **kwargs)
            except (RuntimeError, TypeError, ValueError, IndexError):
                return None
        if isinstance(value, torch.Tensor) and value.numel() > MAX_STATIC_ELEMENTS:
            return None
        values[n] = value
    out = values[node]
    return out if isinstance(out, torch.Tensor) else None


def depends_on(node: Node, sources: set, limit: int = 400) -> bool:
    """Whether one of ``sources`` is among node's ancestors (node included), looking at no
    more than ``limit`` nodes: a term computed from an attention's queries or keys."""
    seen, stack = set(), [node]
    while stack and len(seen) < limit:
        n = stack.pop()
        if n in sources:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return False



def is_static(node: Node, limit: int = 200) -> bool:
    """No graph input reaches node (it is computed from parameters, buffers and constants only),
    within ``limit`` ancestors (a larger sub-graph counts as not static)."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        if n.op == "placeholder" or len(seen) >= limit:
            return False
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return True
