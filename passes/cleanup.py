"""Cleanup: inverse pairs, no-op views and repeated computations.

    permute(permute(x, p), q)  → permute(x, p ∘ q)  (→ x when that is the identity)
    permute(x, identity)       → x
    unsqueeze(squeeze(y, d), d) → y                 when axis d of y has size 1
    squeeze(unsqueeze(x, d), d) → x
    view(view(x, s₁), s₂)      → reshape(x, s₂)
    view(x, shape(x))          → x
    slice(x, d, 0, ≥ size, 1)  → x
    constant_pad_nd(x, [0, …]) → x                  (Swin pads to a window multiple, often by 0)
    clone(x)                   → x                  (used by ``windows``: a contiguity copy)
    cat([x, empty, …], d)      → cat([x, …], d), or x   parts of size 0 along d (Phi-3's q[..., D:])
    x[..., [i, i+1, …], ...]   → slice(x, d, i, i + n)  a constant index of consecutive entries on
                                                      one axis (Falcon's qkv[:, :, :, [-2]])
    f(a, b, …) twice           → once               pure ATen calls with equal arguments

Dead code goes at the end of every pass.

Why: the other passes emit conversions and views that meet face to face; each left in place is
an op, and a transpose or reshape that touches the last axis is a memory copy on the ANE
(docs/ane.md#principles, 3). The canonical rules are shared with those passes
(``CANONICAL_RULES``) so that pairs cancel in the same fixpoint that creates them.
"""
from __future__ import annotations

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, normalize_dim, rank, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._layouts import normalize_dims_ordered, squeezed_dims



def _match_permute_chain(node: Node) -> MatchResult:
    inner = node.args[0]
    if not is_op(inner, aten.permute):
        return MatchResult.skip()
    n = rank(node)
    p = normalize_dims_ordered(inner.args[1], n)
    q = normalize_dims_ordered(node.args[1], n)
    return MatchResult.ok(x=inner.args[0], dims=[p[i] for i in q])


def _fold_permutes(rw, node: Node, m: dict) -> Node:
    if m["dims"] == list(range(len(m["dims"]))):
        return m["x"]
    return rw.call(aten.permute.default, m["x"], m["dims"])


def _match_identity_permute(node: Node) -> MatchResult:
    n = rank(node)
    if normalize_dims_ordered(node.args[1], n) != list(range(n)):
        return MatchResult.skip()
    return MatchResult.ok(x=node.args[0])


def _match_unsqueeze_squeeze(node: Node) -> MatchResult:
    inner = node.args[0]
    dims = squeezed_dims(inner) if isinstance(inner, Node) else None
    d = normalize_dim(node.args[1], rank(node))
    if dims != [d]:
        return MatchResult.skip()
    return MatchResult.ok(x=inner.args[0])


def _match_squeeze_unsqueeze(node: Node) -> MatchResult:
    inner = node.args[0]
    if not is_op(inner, aten.unsqueeze):
        return MatchResult.skip()
    d = normalize_dim(inner.args[1], rank(inner))
    if squeezed_dims(node) != [d]:
        return MatchResult.skip()
    return MatchResult.ok(x=inner.args[0])


def _match_view_chain(node: Node) -> MatchResult:
    inner = node.args[0]
    if not is_op(inner, *VIEWS):
        return MatchResult.skip()
    return MatchResult.ok(x=inner.args[0])


def _match_noop_view(node: Node) -> MatchResult:
    if shape(node) != shape(node.args[0]):
        return MatchResult.skip()
    return MatchResult.ok(x=node.args[0])


def _match_noop_slice(node: Node) -> MatchResult:
    x = node.args[0]
    dim = normalize_dim(arg(node, 1, "dim", 0), rank(x))
    start, end, step = arg(node, 2, "start", None), arg(node, 3, "end", None), arg(node, 4, "step", 1)
    size = shape(x)[dim]
    if (start in (None, 0)) and (end is None or (isinstance(end, int) and end >= size)) and step == 1:
        return MatchResult.ok(x=x)
    return MatchResult.skip()


def _match_clone(node: Node) -> MatchResult:
    if node.kwargs.get("memory_format") not in (None, torch.contiguous_format):
        return MatchResult.skip()
    return MatchResult.ok(x=node.args[0])


def _match_noop_pad(node: Node) -> MatchResult:
    pads = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
    if not isinstance(pads, (list, tuple)) or any(p != 0 for p in pads):
        return MatchResult.skip()
    return MatchResult.ok(x=node.args[0])


def _match_empty_cat_parts(node: Node) -> MatchResult:
    parts, r = node.args[0], rank(node)
    if r is None or not isinstance(parts, (list, tuple)):
        return MatchResult.skip()
    dim = normalize_dim(arg(node, 1, "dim", 0), r)
    kept = [p for p in parts if not (isinstance(p, Node) and shape(p) is not None and shape(p)[dim] == 0)]
    if len(kept) == len(parts) or not kept:
        return MatchResult.skip()
    return MatchResult.ok(kept=kept, dim=dim)


def _drop_empty_parts(rw, node: Node, m: dict) -> Node:
    return m["kept"][0] if len(m["kept"]) == 1 else rw.call(aten.cat.default, m["kept"], m["dim"])


def _constant(node):
    """The tensor a node holds when it is a module attribute (through copies), else None."""
    while is_op(node, aten.clone, aten.alias, aten.lift_fresh_copy):
        node = node.args[0]
    if not (isinstance(node, Node) and node.op == "get_attr"):
        return None
    value = node.graph.owning_module
    for part in node.target.split("."):
        value = getattr(value, part, None)
    return value if isinstance(value, torch.Tensor) else None


def _match_index_slice(node: Node) -> MatchResult:
    x, indices = node.args[:2]
    given = [(d, i) for d, i in enumerate(indices) if i is not None]
    if len(given) != 1 or rank(x) is None:
        return MatchResult.skip()
    dim, idx = given[0]
    value = _constant(idx)
    if value is None or value.dim() != 1 or value.is_floating_point() or value.numel() == 0:
        return MatchResult.skip()
    size = shape(x)[dim]
    at = [int(v) % size for v in value.tolist()]
    if at != list(range(at[0], at[0] + len(at))):
        return MatchResult.skip()
    return MatchResult.ok(x=x, dim=dim, start=at[0], end=at[0] + len(at))


def _index_as_slice(rw, node: Node, m: dict) -> Node:
    return rw.call(aten.slice.Tensor, m["x"], m["dim"], m["start"], m["end"])


def _existing(rw, node, m):
    return m["x"]


def _refold_view(rw, node: Node, m: dict) -> Node:
    """A reshape: x may not be viewable as the outer shape (the inner op was a reshape of a
    non-contiguous tensor, or a transpose was folded below it)."""
    return rw.call(aten.reshape.default, m["x"], *node.args[1:], **node.kwargs)


def _cse_key(node: Node):
    def key(a):
        if isinstance(a, (list, tuple)):
            return tuple(key(x) for x in a)
        if isinstance(a, (torch.dtype, torch.device, torch.memory_format, torch.layout)):
            return str(a)
        return a
    return (node.target, key(node.args), tuple(sorted((k, key(v)) for k, v in node.kwargs.items())))


def _match_cse(node: Node) -> MatchResult:
    inputs = node.all_input_nodes
    if not inputs or node.is_impure():
        return MatchResult.skip()
    try:
        k = _cse_key(node)
        hash(k)
    except TypeError:
        return MatchResult.skip()
    for other in inputs[0].users:
        if other is not node and other.target is node.target and other < node and _cse_key(other) == k:
            return MatchResult.ok(x=other)
    return MatchResult.skip()


fold_permute_chain = Rule("fold_permute_chain", (aten.permute,), _match_permute_chain, _fold_permutes,
                          "permute(permute(x, p), q) → permute(x, p ∘ q), or x")
drop_identity_permute = Rule("drop_identity_permute", (aten.permute,), _match_identity_permute, _existing,
                             "permute(x, id) → x")
cancel_unsqueeze_squeeze = Rule("cancel_unsqueeze_squeeze", (aten.unsqueeze,), _match_unsqueeze_squeeze,
                                _existing, "unsqueeze(squeeze(y, d), d) → y")
cancel_squeeze_unsqueeze = Rule("cancel_squeeze_unsqueeze", (aten.squeeze,), _match_squeeze_unsqueeze,
                                _existing, "squeeze(unsqueeze(x, d), d) → x")
fold_view_chain = Rule("fold_view_chain", VIEWS, _match_view_chain, _refold_view,
                       "view(view(x, s1), s2) → reshape(x, s2)")
drop_noop_view = Rule("drop_noop_view", VIEWS, _match_noop_view, _existing, "view(x, shape(x)) → x")
drop_noop_slice = Rule("drop_noop_slice", (aten.slice.Tensor,), _match_noop_slice, _existing,
                       "slice(x, d, 0, ≥ size, 1) → x")
drop_noop_pad = Rule("drop_noop_pad", (aten.constant_pad_nd,), _match_noop_pad, _existing,
                     "constant_pad_nd(x, [0, …, 0]) → x")
drop_clone = Rule("drop_clone", (aten.clone,), _match_clone, _existing,
                  "clone(x) → x: a functional graph needs no copies; views after it become reshapes")
drop_empty_cat_parts = Rule("drop_empty_cat_parts", (aten.cat,), _match_empty_cat_parts, _drop_empty_parts,
                            "cat([x, empty, …], d) → cat([x, …], d), or x")
index_as_slice = Rule("index_as_slice", (aten.index.Tensor,), _match_index_slice, _index_as_slice,
                      "x[..., constant consecutive indices, ...] → slice(x, d, i, i + n)")
dedupe = Rule("dedupe", None, _match_cse, _existing, "a pure call repeated with equal arguments → one call")

# The canonical forms: shared with the passes whose rewrites leave such pairs behind.
CANONICAL_RULES = (fold_permute_chain, drop_identity_permute, cancel_unsqueeze_squeeze,
                   cancel_squeeze_unsqueeze, fold_view_chain, drop_noop_view, drop_noop_slice,
                   drop_noop_pad, drop_empty_cat_parts, index_as_slice)

cleanup = Pass("cleanup", [*CANONICAL_RULES, dedupe], __doc__)
