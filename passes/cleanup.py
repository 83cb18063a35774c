"""Cleanup: inverse pairs, no-op views and repeated computations.

    permute(permute(x, p), q)  → permute(x, p ∘ q)  (→ x when that is the identity)
    permute(x, identity)       → x
    unsqueeze(squeeze(y, d), d) → y                 when axis d of y has size 1
    squeeze(unsqueeze(x, d), d) → x
    view(view(x, s₁), s₂)      → reshape(x, s₂)
    view(x, shape(x))          → x
    slice(x, d, 0, ≥ size, 1)  → x
    constant_pad_nd(x, [0, …]) → x                  (Swin pads to a window multiple, often by 0)
    clone(x)                   → x                  (a contiguity copy: the graph has value semantics)
    cat([x, empty, …], d)      → cat([x, …], d), or x   parts of size 0 along d (Phi-3's q[..., D:])
    x[..., I₀, I₁, …, ...]     → expand(reshape(slice(x, …)))   static indices (a buffer, or built
                                 from arange) that each run through consecutive positions along
                                 one axis of the index shape, in order: Falcon's qkv[:, :, :, [-2]],
                                 a mask builder's p[arange(B)[:, …], arange(K)[…, :]] — no gather
    permute(f(a, b, …))        → f(reshape(a), …)   elementwise f over broadcast operands
                                 (``_broadcast_permute``: an outer-product padding mask)
    f(a, b, …) twice           → once               pure ATen calls with equal arguments
    permute of rank ≥ 5        → rank-≤4 block swaps (``_low_rank``, ``windows``' rule, for those
                                 later passes leave: a fused split at one token)
    f(a, b, …) at rank ≥ 5     → f on rank-≤4 views (``_rank_views``: LongT5's local-block masks)
    select / expand at rank 5  → the same at rank ≤ 4, axes of size 1 left out (``_unit_axes``:
                                 Falcon's k/v split and GPT-J's rotary table at one token)
    slice(view(x, s), d, …)    → view(slice(x, d, …), s')   the view's only reader, d among the leading
                                 axes it keeps, its last axis resized (a copy): the copy moves
                                 the slice's part only (q of a fused qkv conv regrouped into
                                 windows for a max pool, Hiera's query pooling)
    permute(x, p)              → reshape(x, …)     when the axes of size > 1 keep their order: it
                                 moves no element (a DiT's (B, 1, C) modulation turned channels-
                                 first); not among the canonical rules, whose conversions it would hide

Dead code goes at the end of every pass.

Why: the other passes emit conversions and views that meet face to face; each left in place is
an op, and a transpose or reshape that touches the last axis is a memory copy on the ANE
(docs/ane.md#principles, 3). The canonical rules are shared with those passes
(``CANONICAL_RULES``) so that pairs cancel in the same fixpoint that creates them.
"""
from __future__ import annotations

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, arg, aten, is_op, normalize_dim, rank, shape, static_value
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._broadcast_permute import permute_into_broadcasts
from ._low_rank import low_rank_permute
from ._rank_views import LATE_RANK_VIEW_RULES
from ._slice_views import slice_before_view
from ._unit_axes import unit_axes_expand, unit_axes_select
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


def _match_unit_permute(node: Node) -> MatchResult:
    x = node.args[0]
    sizes = shape(x)
    if sizes is None:
        return MatchResult.skip()
    perm = list(normalize_dims_ordered(node.args[1], len(sizes)))
    order = [d for d in perm if sizes[d] != 1]
    if order != sorted(order) or perm == list(range(len(sizes))):
        return MatchResult.skip()  # it moves elements, or it is the identity (drop_identity_permute)
    return MatchResult.ok(x=x)


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


def _index_axes(indices: list):
    """Each constant index as (start, length, axis of the broadcast index shape it runs along,
    or None when it holds one value), with the broadcast shape; None unless every index runs
    along at most one axis through consecutive positions and the axes keep the index order."""
    broadcast = torch.broadcast_shapes(*(i.shape for i in indices))
    runs, last = [], -1
    for idx in indices:
        full = idx.expand(broadcast).reshape(broadcast)
        varying = [a for a in range(len(broadcast)) if broadcast[a] > 1 and not bool(
            (full == full.narrow(a, 0, 1)).all())]
        if len(varying) > 1:
            return None
        if not varying:
            runs.append((int(full.flatten()[0]), 1, None))
            continue
        axis = varying[0]
        line = full.movedim(axis, -1).reshape(-1, broadcast[axis])[0]
        start = int(line[0])
        if axis <= last or not torch.equal(line, torch.arange(start, start + len(line))):
            return None
        runs.append((start, len(line), axis))
        last = axis
    return runs, tuple(broadcast)


def _match_index_slice(node: Node) -> MatchResult:
    x, indices = node.args[:2]
    given = [d for d, i in enumerate(indices) if i is not None]
    if not given or rank(x) is None or given != list(range(given[0], given[-1] + 1)):
        return MatchResult.skip()
    values = [static_value(indices[d]) for d in given]
    if any(v is None or v.is_floating_point() or v.dtype == torch.bool or v.numel() == 0 for v in values):
        return MatchResult.skip()
    sizes = [shape(x)[d] for d in given]
    found = _index_axes([v % size for v, size in zip(values, sizes)])
    if found is None:
        return MatchResult.skip()
    runs, broadcast = found
    if any(start + length > size for (start, length, _), size in zip(runs, sizes)):
        return MatchResult.skip()
    return MatchResult.ok(x=x, dims=given, runs=runs, broadcast=broadcast)


def _index_as_slice(rw, node: Node, m: dict) -> Node:
    """x sliced on each indexed axis, then its runs placed on the axes of the index shape."""
    y = m["x"]
    for d, (start, length, _) in zip(m["dims"], m["runs"]):
        y = rw.call(aten.slice.Tensor, y, d, start, start + length)
    lead, rest = list(shape(y)[:m["dims"][0]]), list(shape(y)[m["dims"][-1] + 1:])
    placed = [1] * len(m["broadcast"])
    for _, length, axis in m["runs"]:
        if axis is not None:
            placed[axis] = length
    target = lead + placed + rest
    if list(shape(y)) != target:
        y = rw.call(aten.reshape.default, y, target)
    full = lead + list(m["broadcast"]) + rest
    return y if target == full else rw.call(aten.expand.default, y, full)


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
                      "x[..., static consecutive indices, ...] → expand(reshape(slice(x, …))) (no gather)")
dedupe = Rule("dedupe", None, _match_cse, _existing, "a pure call repeated with equal arguments → one call")
unit_permute_as_reshape = Rule("unit_permute_as_reshape", (aten.permute,), _match_unit_permute,
                               lambda rw, node, m: rw.call(aten.reshape.default, m["x"], list(shape(node))),
                               "permute(x, p) → reshape(x, shape): only axes of size 1 move")

# The canonical forms: shared with the passes whose rewrites leave such pairs behind.
CANONICAL_RULES = (fold_permute_chain, drop_identity_permute, cancel_unsqueeze_squeeze,
                   cancel_squeeze_unsqueeze, fold_view_chain, drop_noop_view, drop_noop_slice,
                   drop_noop_pad, drop_empty_cat_parts, index_as_slice)

cleanup = Pass("cleanup", [*CANONICAL_RULES, drop_clone, low_rank_permute, unit_axes_select, unit_axes_expand,
                           permute_into_broadcasts, *LATE_RANK_VIEW_RULES, unit_permute_as_reshape, slice_before_view,
                           dedupe], __doc__)
