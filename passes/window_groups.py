"""Window groups: attention over windows (or grid cells) of a map runs with the windows on axis 2
of the channels-first tensor, not on its batch axis.

Glossary: B batch, C channels, G windows per sample, S tokens per window, N = B·G.

    X = moves_out(f(E₁, …, leaves)),  Eᵢ = moves_in(Yᵢ) of shape (N, C, 1, S)
        → X = moves'_out(f(E'₁, …, leaves')),  E'ᵢ = moves'_in(Yᵢ) of shape (B, C, G, S)

``moves_in`` is the window partition of a map Y (any chain of views and permutes, found by
replaying it on an index, as in ``_layout_cost``), ``moves_out`` the window reverse, and f the
region between them: 1×1 convolutions, elementwise ops, the per-head einsums
``bchq,bkhc->bkhq`` and ``bkhq,bchk->bchq`` (their h axis is a batch axis), softmaxes, means,
splits and concats over the channels or the tokens, and the per-head transpose of k
(``[0, 3, 2, 1]``). Every one of them treats axes 0 and 2 alike, so f is the same graph on the
regrouped tensor; a per-window constant (Swin's shift mask, (N, K, 1, Q)) is regrouped with it,
a shared one ((1, K, 1, Q)) broadcasts. The new movements are rank-≤4 block swaps of the map
(``_movement``): a partition of (B, C, H, W) into (B, C, G, S) keeps each window row in place,
one swap, where the windows on the batch axis needed two (or a channels-last detour of
three). A reverse into a channels-last map goes to its channels-first form and a ``from``,
which the layout then moves on: a post-norm block's norm runs over the channels. The region
is rewritten only when its movements need fewer transposes than before.

A region with an op outside that set, a reshape inside it, a value read outside it, or a
constant with another leading size is left as it is.

The decision counts transposes, not padded bytes: a window row narrower than 32 elements
becomes the last axis of the swap (Swin's 7), which the estimator prices above the bytes the
batch-axis form moved (Swin-T at 224², A15: 1.75× → 1.59× the baseline), for no more transposes
than the captured model (88 → 42, baseline 52).

Why: every transpose that moves the last axis is a memory copy on the ANE (docs/ane.md#principles,
3); Swin's windows on the batch axis cost seven transposes a block where the captured model had four.
"""
from __future__ import annotations

import math
import operator

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, is_op, is_static, readers, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._heads import replay
from ._layout_cost import MOVES
from ._layouts import emit_from
from ._propagation import PROPAGATION_RULES
from .layer_norm import channel_layer_norm, converted_layer_norm
from ._movement import block_swaps, emit_block_swaps, factorize, merged

MAX_REGION = 400
MAX_INDEX = 1 << 24
ELEMENTWISE = (aten.add, aten.sub, aten.mul, aten.div, aten.rsub, aten.neg, aten.clamp, aten.exp, aten.tanh,
               aten.sigmoid, aten.gelu, aten.relu, aten.silu, aten.sqrt, aten.rsqrt, aten.pow, aten._to_copy)
REDUCTIONS = (aten._softmax, aten.softmax, aten.mean, aten.sum, aten.amax)
EINSUMS = ("bchq,bkhc->bkhq", "bkhq,bchk->bchq")


def _chain(node: Node) -> tuple[Node, list[Node]]:
    path = []
    while is_op(node, *MOVES) and isinstance(node.args[0], Node):
        path.append(node)
        node = node.args[0]
    return node, path


def _movement(src: Node, path: list[Node]) -> torch.Tensor | None:
    """For each element at the end of path, its flat position in src; None when too large or
    not a pure movement."""
    if shape(src) is None or math.prod(shape(src)) > MAX_INDEX:
        return None
    try:
        idx = replay(src, path, torch.arange(math.prod(shape(src))).view(shape(src)))
    except (RuntimeError, TypeError, KeyError, IndexError):
        return None
    return idx if factorize(idx) is not None else None


def _windowed(s) -> bool:
    return s is not None and len(s) == 4 and s[2] == 1 and s[0] > 1


def _dims_ok(node: Node) -> bool:
    """An op of the region that treats axes 0 and 2 alike."""
    if is_op(node, *ELEMENTWISE):
        return True
    if is_op(node, aten.conv2d):  # a 1×1 kernel, stride 1, no padding: one pixel at a time
        w, stride, padding = node.args[1], arg(node, 3, "stride", [1]), arg(node, 4, "padding", [0])
        return (shape(w) is not None and tuple(shape(w)[2:]) == (1, 1) and set(stride) == {1}
                and set(padding) == {0})
    if is_op(node, aten.einsum):
        return node.args[0].replace(" ", "") in EINSUMS
    if is_op(node, *REDUCTIONS):
        dims = node.args[1] if len(node.args) > 1 else None
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        keep = is_op(node, aten._softmax, aten.softmax) or (len(node.args) > 2 and node.args[2])
        return bool(dims) and keep and all(d % 4 in (1, 3) for d in dims)
    if is_op(node, aten.split_with_sizes, aten.split):
        return arg(node, 2, "dim", 0) % 4 in (1, 3)
    if is_op(node, aten.slice, aten.cat):
        return arg(node, 1, "dim", 0) % 4 in (1, 3)
    if is_op(node, aten.permute):
        p = list(node.args[1])
        return p[0] == 0 and p[2] == 2
    return node.op == "call_function" and node.target is operator.getitem


def _region(z: Node, n: int):
    """(interior nodes, entries {node: (source, index)}, leaves) of the region ending in z, or
    the reason there is none, naming the node."""
    interior, entries, leaves, stack = set(), {}, set(), [z]
    while stack:
        node = stack.pop()
        if node in interior or node in entries or node in leaves:
            continue
        if is_static(node):
            s = shape(node) or ()
            padded = (1,) * (4 - len(s)) + tuple(s)
            if len(padded) != 4 or padded[2] != 1 or padded[0] not in (1, n):
                return f"constant {node.name} {tuple(s)} is neither shared by the windows nor one per window"
            leaves.add(node)
            continue
        src, path = _chain(node)
        if path and _windowed(shape(node)) and shape(node)[0] == n and (shape(src) or (0,))[0] != n:
            idx = _movement(src, path)
            if idx is None:
                return f"the partition into {node.name} is not a pure movement of {src.name}"
            entries[node] = (src, idx)
            continue
        is_list = node.op == "call_function" and not isinstance(node.meta.get("val"), torch.Tensor)
        if not _dims_ok(node) or not (is_list or (_windowed(shape(node)) and shape(node)[0] == n)):
            return (f"{node.name} ({node.target}) {shape(node)} does not treat the windows and axis 2 "
                    "alike (expected 1×1 convs, elementwise ops, the per-head einsums, reductions, splits "
                    "and concats over channels or tokens)")
        interior.add(node)
        if len(interior) > MAX_REGION:
            return f"more than {MAX_REGION} ops between the partition and the reverse"
        if is_op(node, aten.conv2d):  # its weight and bias are parameters, not windows
            if not all(is_static(a) for a in node.args[1:3] if isinstance(a, Node)):
                return f"{node.name}: a convolution with a computed weight"
            stack.append(node.args[0])
        else:
            stack.extend(node.all_input_nodes)
    return interior, entries, leaves


def _group_index(idx_e: torch.Tensor, b: int) -> torch.Tensor:
    """Entry (N, C, 1, S) → the same elements as (B, C, G, S)."""
    n, c, _, s = idx_e.shape
    return idx_e.view(b, n // b, c, s).permute(0, 2, 1, 3)


def _swaps(idx: torch.Tensor) -> int:
    sizes, perm = merged(*factorize(idx))
    return len(block_swaps(sizes, perm))


def _transposes(path: list[Node]) -> int:
    return sum(is_op(p, aten.permute) and list(p.args[1]) != sorted(p.args[1]) for p in path)


def _match(node: Node) -> MatchResult:
    z, out_path = _chain(node)
    if not out_path or not _windowed(shape(z)) or any(is_op(r, *MOVES) for r in readers(node)):
        return MatchResult.skip()
    n, c, _, s = shape(z)
    if shape(node)[0] == n or _transposes(out_path) == 0:
        return MatchResult.skip()  # no window reverse: the windows stay on the batch axis
    found = _region(z, n)
    if isinstance(found, str):
        return MatchResult.fail(found)
    interior, entries, leaves = found
    batches = {shape(src)[0] for src, _ in entries.values()}
    b = batches.pop() if len(batches) == 1 else None
    if b is None or n % b or n == b:
        return MatchResult.fail(f"the region of {z.name} has no partition of a map of one batch size")
    outside = [x.name for x in interior if any(r not in interior and r is not out_path[-1] for r in readers(x))]
    if outside or any(len(readers(p)) != 1 for p in out_path[1:]) or any(
            any(r not in interior for r in readers(e)) for e in entries):
        return MatchResult.fail(f"values of the region of {z.name} are read outside it ({', '.join(outside[:3])}…): "
                                "they would stay on the batch axis too")
    out_idx = _movement(z, out_path)
    if out_idx is None:
        return MatchResult.fail(f"the reverse from {z.name} is not a pure movement")
    g = n // b
    pos = out_idx  # flat positions in z (N, C, 1, S) → in the grouped (B, C, G, S)
    wn, cc, ss = pos // (c * s), (pos // s) % c, pos % s
    grouped_out = (((wn // g) * c + cc) * g + wn % g) * s + ss
    grouped_in = {e: _group_index(idx, b) for e, (src, idx) in entries.items()}
    if factorize(grouped_out) is None or any(factorize(i) is None for i in grouped_in.values()):
        return MatchResult.fail(f"the windows of {z.name} are not whole samples, window after window")
    exit_cost, channels_first = _swaps(grouped_out), None
    if grouped_out.dim() == 4 and torch.equal(cc, torch.arange(shape(node)[3]).expand_as(cc)) and shape(node)[3] == c:
        cf = grouped_out.permute(0, 3, 1, 2)  # the map channels-first, then its ``from``
        if factorize(cf) is not None and _swaps(cf) + 1 < exit_cost:
            exit_cost, channels_first = _swaps(cf) + 1, cf
    before = _transposes(out_path) + sum(_transposes(_chain(e)[1]) for e in entries)
    after = exit_cost + sum(_swaps(i) for i in grouped_in.values())
    if after >= before:
        return MatchResult.fail(f"the windows of {z.name} on axis 2 need {after} transposes, on the batch axis "
                                f"{before}: left as they are")
    return MatchResult.ok(z=z, b=b, g=g, interior=interior, entries=entries, leaves=leaves,
                          grouped_in=grouped_in, grouped_out=grouped_out, channels_first=channels_first)


def _emit_movement(rw, src: Node, idx: torch.Tensor) -> Node:
    sizes, perm = merged(*factorize(idx))
    return emit_block_swaps(rw, rw.call(aten.reshape.default, src, sizes), block_swaps(sizes, perm), list(idx.shape))


def _regroup_leaf(rw, leaf: Node, b: int, g: int) -> Node:
    s = shape(leaf) or ()
    if len(s) < 4 or s[0] == 1:
        return leaf
    _, a1, _, a3 = s
    grouped = rw.call(aten.reshape.default, leaf, [b, g, a1, a3])
    return rw.call(aten.permute.default, grouped, [0, 2, 1, 3])


def _rewrite(rw, node: Node, m: dict) -> Node:
    b, g = m["b"], m["g"]
    mapped = {e: _emit_movement(rw, m["entries"][e][0], m["grouped_in"][e]) for e in m["entries"]}
    mapped.update({leaf: _regroup_leaf(rw, leaf, b, g) for leaf in m["leaves"]})
    for x in sorted(m["interior"]):
        mapped[x] = rw.call(x.target, *torch.fx.node.map_arg(x.args, lambda a: mapped.get(a, a)),
                            **torch.fx.node.map_arg(x.kwargs, lambda a: mapped.get(a, a)))
    if m["channels_first"] is not None:  # a channels-last map: its channels-first form, converted
        return emit_from(rw, _emit_movement(rw, mapped[m["z"]], m["channels_first"]), 4)
    return _emit_movement(rw, mapped[m["z"]], m["grouped_out"])


window_groups = Pass("window_groups", [Rule("windows_on_axis_2", MOVES, _match, _rewrite,
                                            "moves_out(f(moves_in(Y))) → moves'_out(f(moves'_in(Y))) with "
                                            "the windows on axis 2: (N, C, 1, S) → (B, C, G, S)"),
                                       channel_layer_norm, converted_layer_norm, *PROPAGATION_RULES],
                     __doc__)  # PROPAGATION_RULES end in cleanup's canonical rules
