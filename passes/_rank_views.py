"""Ops computed at rank ≥ 5 → the same op on a rank-≤4 view of its operands (``windows``' rules).

A window partition written as reshape + permute of rank 6 is lowered by ``_low_rank``, but the
ops that read the partition while its extra axes are still split leave rank-5 and rank-6 tensors
behind (the ANE is 4-D; coremltools refuses rank 6). Each of these ops treats all but a few axes
alike, so it runs on a view that merges the others, and a reshape restores its shape; the views
meet the reshapes around them and fold (``fold_view_chain``), so no rank > 4 is left:

    slice(reshape(x_R4, S), d, a, b)     → reshape(slice(x_R4, k, a·m, b·m), shape)
        axis d of S the outer part of axis k of x (same prefix product; m the inner factor):
        a fused qkv split into (3, B, G, H, S, d) then unbound (Twins, Hiera)
    slice / select(x_S, d, …)            → reshape(slice(view(x, [∏S[:d], S[d], ∏S[d+1:−1], S[−1]]), 1, …))
    reduce(x_S, d) (amax, sum, mean, softmax over one axis or adjacent axes)
                                         → reshape(reduce(view(x, [∏S[:d], S[d], ∏…, S[−1]]), 1))
        (Hiera's query pooling: (B, H, G, s, S/s, d).amax(3))
    linear(x_A0…An−1C, W)                → reshape(linear(view(x, [A0, ∏A1…An−1, C]), W))
        (Twins: the qkv projection of the windows (B, h, w, ws, ws, C))
    sdpa(q_B…HLE, k, v)                  → reshape(sdpa(view(q, [∏B…, H, L, E]), …))
        (batch axes of q, k, v equal; a mask broadcast over them, or with the same ones)
    squeeze / unsqueeze at rank ≥ 5      → reshape
    cat / constant_pad_nd at rank ≥ 5    → on a view merging the axes it leaves alone
    einsum('...qhd,...khd->...hqk')      → its '...' axes merged into one (LongT5's local blocks;
                                           coremltools fails on it at rank 5)
    f(a, b, …) elementwise at rank ≥ 5   → f on views merging the runs of axes every operand
                                           broadcasts alike (in ``cleanup``, after attention)

The last axis is never merged (a reshape that keeps it moves no data on the ANE). No window size or
model is assumed; an sdpa whose q, k, v batch otherwise (grouped-query heads) is declined, with why.
"""
from __future__ import annotations

import math

from torch.fx import Node

from ane_rewrite.hardware import NATIVE_RANK
from ane_rewrite.rewrite.graph import arg, aten, is_op, normalize_dim, normalize_dims, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

REDUCTIONS = (aten.amax, aten.amin, aten.sum, aten.mean, aten._softmax, aten.softmax, aten._log_softmax,
              aten.log_softmax)
_ONE_DIM = (aten._softmax, aten.softmax, aten._log_softmax, aten.log_softmax)  # dim is an int, not a list


def _high(node: Node) -> bool:
    s = shape(node)
    return s is not None and len(s) > NATIVE_RANK


def _around(sizes: tuple, first: int, last: int) -> list[int]:
    """A view of ``sizes`` with the axes first…last as one (its axis 1), the axes before them as
    one, and those after them as one plus the last axis on its own: rank ≤ 4."""
    pre, block, post = sizes[:first], sizes[first:last + 1], sizes[last + 1:]
    view = [math.prod(pre), math.prod(block)]
    return view + ([math.prod(post[:-1]), post[-1]] if post else [])


def _view(rw, x: Node, sizes: list[int]) -> Node:
    return x if list(shape(x)) == list(sizes) else rw.call(aten.reshape.default, x, list(sizes))

# slice / select -------------------------------------------------------------------------------
def _outer_axis(src: tuple, sizes: tuple, d: int) -> tuple[int, int] | None:
    """(k, m) when axis d of ``sizes`` (a reshape of ``src``) is the outer part of axis k of src,
    its entries m positions of src's axis k apart; None otherwise."""
    before, inner = math.prod(sizes[:d]), math.prod(sizes[d + 1:])
    for k in range(len(src)):
        if math.prod(src[:k]) == before and inner % math.prod(src[k + 1:]) == 0:
            return k, inner // math.prod(src[k + 1:])
        if math.prod(src[:k]) > before:
            break
    return None


def _match_slice(node: Node) -> MatchResult:
    x = node.args[0]
    if not (_high(x) or _high(node)):
        return MatchResult.skip()
    sizes = shape(x)
    d = normalize_dim(arg(node, 1, "dim", 0), len(sizes))
    if is_op(node, aten.select):
        i = normalize_dim(node.args[2], sizes[d])
        start, end, step = i, i + 1, 1
    else:
        start, end, step = arg(node, 2, "start", None), arg(node, 3, "end", None), arg(node, 4, "step", 1)
        start, end = 0 if start is None else start, sizes[d] if end is None else end
        start, end = (min(max(normalize_dim(v, sizes[d]), 0), sizes[d]) for v in (start, end))
    src = x.args[0] if is_op(x, aten.reshape) and not _high(x.args[0]) else None
    found = _outer_axis(shape(src), sizes, d) if src is not None and step == 1 else None
    if found is not None:
        k, m = found
        return MatchResult.ok(x=src, view=list(shape(src)), dim=k, start=start * m, end=end * m, step=1)
    return MatchResult.ok(x=x, view=_around(sizes, d, d), dim=1, start=start, end=end, step=step)


def _rewrite_slice(rw, node: Node, m: dict) -> Node:
    part = rw.call(aten.slice.Tensor, _view(rw, m["x"], m["view"]), m["dim"], m["start"], m["end"], m["step"])
    return rw.call(aten.reshape.default, part, list(shape(node)))


# reductions over one axis or adjacent axes ----------------------------------------------------
def _match_reduction(node: Node) -> MatchResult:
    x = node.args[0]
    if not _high(x):
        return MatchResult.skip()
    dims = arg(node, 1, "dim", None)
    if dims is None or (not isinstance(dims, int) and len(dims) == 0):
        return MatchResult.fail(f"{node.name} reduces every axis of a rank-{len(shape(x))} tensor")
    dims = normalize_dims(dims, len(shape(x)))
    if dims != list(range(dims[0], dims[-1] + 1)):
        return MatchResult.fail(f"{node.name} reduces axes {dims} of {shape(x)}, not adjacent: "
                                "no rank-≤4 view keeps them apart from the others")
    return MatchResult.ok(x=x, view=_around(shape(x), dims[0], dims[-1]))


def _rewrite_reduction(rw, node: Node, m: dict) -> Node:
    dim = 1 if is_op(node, *_ONE_DIM) else [1]
    out = rw.call(node.target, _view(rw, m["x"], m["view"]), dim, *node.args[2:], **node.kwargs)
    return rw.call(aten.reshape.default, out, list(shape(node)))


# linear, sdpa, squeeze ------------------------------------------------------------------------
def _match_linear(node: Node) -> MatchResult:
    x = node.args[0]
    if not _high(x):
        return MatchResult.skip()
    s = shape(x)
    return MatchResult.ok(x=x, view=[s[0], math.prod(s[1:-1]), s[-1]])


def _rewrite_linear(rw, node: Node, m: dict) -> Node:
    out = rw.call(node.target, _view(rw, m["x"], m["view"]), *node.args[1:], **node.kwargs)
    return rw.call(aten.reshape.default, out, list(shape(node)))


def _match_sdpa(node: Node) -> MatchResult:
    q, k, v = node.args[:3]
    if not _high(q):
        return MatchResult.skip()
    batch = shape(q)[:-2]
    if shape(k)[:-2] != batch or shape(v)[:-2] != batch:
        return MatchResult.fail(f"q {shape(q)}, k {shape(k)} and v {shape(v)} have other batch axes: "
                                "no one view merges them")
    mask = arg(node, 3, "attn_mask", None)
    mask_view = None
    if isinstance(mask, Node):
        ms = shape(mask)
        lead = ms[:-2]
        if len(ms) > 2 and tuple(lead) == tuple(batch[len(batch) - len(lead):]) and len(lead) == len(batch):
            mask_view = [math.prod(batch[:-1]), batch[-1], *ms[-2:]]
        elif all(a == 1 for a in lead):
            mask_view = list(ms[-2:])
        else:
            return MatchResult.fail(f"the mask {ms} of {node.name} batches otherwise than q {shape(q)}")
    return MatchResult.ok(q=q, k=k, v=v, mask=mask, mask_view=mask_view, batch=list(batch))


def _rewrite_sdpa(rw, node: Node, m: dict) -> Node:
    lead = [math.prod(m["batch"][:-1]), m["batch"][-1]]
    q, k, v = (_view(rw, t, lead + list(shape(t)[-2:])) for t in (m["q"], m["k"], m["v"]))
    args, kwargs = list(node.args), dict(node.kwargs)
    args[:3] = [q, k, v]
    if m["mask"] is not None:
        mask = _view(rw, m["mask"], m["mask_view"])
        if len(args) > 3:
            args[3] = mask
        else:
            kwargs["attn_mask"] = mask
    out = rw.call(node.target, *args, **kwargs)
    return rw.call(aten.reshape.default, out, list(shape(node)))


def _match_squeeze(node: Node) -> MatchResult:
    if not (_high(node) or _high(node.args[0])):
        return MatchResult.skip()
    return MatchResult.ok(x=node.args[0])


def _rewrite_squeeze(rw, node: Node, m: dict) -> Node:
    return rw.call(aten.reshape.default, m["x"], list(shape(node)))


# elementwise ops, cat, pad, einsum over batch axes -------------------------------------------------
ELEMENTWISE = (aten.add, aten.sub, aten.mul, aten.div, aten.where, aten.gt, aten.lt, aten.ge, aten.le, aten.eq,
               aten.ne, aten.neg, aten.exp, aten.tanh, aten.sigmoid, aten.gelu, aten.relu, aten.silu, aten.rsqrt,
               aten.sqrt, aten.pow, aten._to_copy, aten.logical_and, aten.logical_or, aten.logical_not)


def _groups(out: tuple, operands: list[tuple], fixed: set[int] = frozenset()) -> list[list[int]]:
    """Runs of adjacent axes that every operand holds alike (all broadcast or all whole) and that
    no op-specific axis (``fixed``) is in: each run is one axis of the view."""
    def pattern(a):
        return tuple(s[a - (len(out) - len(s))] == 1 if a >= len(out) - len(s) else True for s in operands)
    runs: list[list[int]] = []
    for a in range(len(out)):
        if runs and a not in fixed and runs[-1][-1] not in fixed and (
                out[a] == 1 or pattern(a) == pattern(runs[-1][-1]) or all(out[b] == 1 for b in runs[-1])):
            runs[-1].append(a)
        else:
            runs.append([a])
    return runs


def _operand_view(s: tuple, out: tuple, runs: list[list[int]]) -> list[int]:  # runs of out → s
    full = (1,) * (len(out) - len(s)) + tuple(s)
    return [math.prod(full[a] for a in run) for run in runs]


def _match_elementwise(node: Node) -> MatchResult:
    if not _high(node):
        return MatchResult.skip()
    out = shape(node)
    tensors = [a for a in node.args if isinstance(a, Node) and shape(a) is not None]
    runs = _groups(out, [shape(t) for t in tensors])
    if len(runs) > NATIVE_RANK:
        return MatchResult.fail(f"{node.name} {out}: its operands broadcast over {len(runs)} runs of axes")
    return MatchResult.ok(views={t: _operand_view(shape(t), out, runs) for t in tensors})


def _rewrite_elementwise(rw, node: Node, m: dict) -> Node:
    args = [_view(rw, a, m["views"][a]) if a in m["views"] else a for a in node.args]
    return rw.call(aten.reshape.default, rw.call(node.target, *args, **node.kwargs), list(shape(node)))


def _match_cat_pad(node: Node) -> MatchResult:
    if not _high(node):
        return MatchResult.skip()
    out = shape(node)
    if is_op(node, aten.cat):
        fixed = {normalize_dim(arg(node, 1, "dim", 0), len(out))}
        parts = list(node.args[0])
    else:
        pads = list(node.args[1])
        fixed = {len(out) - 1 - i // 2 for i, p in enumerate(pads) if p}
        parts = [node.args[0]]
    runs = _groups(out, [out], fixed)
    if len(runs) > NATIVE_RANK:
        return MatchResult.fail(f"{node.name} {out} changes axes {sorted(fixed)}: no rank-≤4 view keeps them apart")
    return MatchResult.ok(parts=parts, runs=runs)


def _rewrite_cat_pad(rw, node: Node, m: dict) -> Node:
    runs = m["runs"]
    views = [_view(rw, p, [math.prod(shape(p)[a] for a in run) for run in runs]) for p in m["parts"]]
    if is_op(node, aten.cat):
        dim = next(i for i, run in enumerate(runs) if normalize_dim(arg(node, 1, "dim", 0), len(shape(node))) in run)
        out = rw.call(node.target, views, dim)
    else:
        rank, pads = len(shape(node)), list(node.args[1])
        new = []
        for i in range(len(runs) - 1, -1, -1):  # innermost axis first, as constant_pad_nd reads them
            a = runs[i][0]
            k = 2 * (rank - 1 - a)
            new += pads[k:k + 2] if k < len(pads) else [0, 0]
        out = rw.call(node.target, views[0], new, *node.args[2:], **node.kwargs)
    return rw.call(aten.reshape.default, out, list(shape(node)))


def _match_einsum(node: Node) -> MatchResult:
    eq, ops = node.args[0].replace(" ", ""), list(node.args[1])
    if not _high(node) and not any(_high(o) for o in ops):
        return MatchResult.skip()
    ins, out = eq.split("->") if "->" in eq else (eq, None)
    terms = ins.split(",")
    if out is None or not all(t.startswith("...") for t in terms + [out]):
        return MatchResult.fail(f"{node.name} '{eq}': only batch axes written as a leading '...' are merged")
    lead = [shape(o)[:len(shape(o)) - len(t) + 3] for o, t in zip(ops, terms)]
    if any(tuple(x) != tuple(lead[0]) for x in lead) or not lead[0]:
        return MatchResult.fail(f"{node.name} '{eq}': its operands' batch axes differ {lead}")
    free = next(c for c in "zyxwvutsrqponmlkjihgfedcba" if c not in eq)
    return MatchResult.ok(ops=ops, lead=math.prod(lead[0]), eq=eq.replace("...", free))


def _rewrite_einsum(rw, node: Node, m: dict) -> Node:
    ops = [_view(rw, o, [m["lead"], *shape(o)[len(shape(o)) - len(t) + 3:]])
           for o, t in zip(m["ops"], node.args[0].replace(" ", "").split("->")[0].split(","))]
    return rw.call(aten.reshape.default, rw.call(node.target, m["eq"], ops), list(shape(node)))


low_rank_slice = Rule("low_rank_slice", (aten.slice.Tensor, aten.select.int), _match_slice, _rewrite_slice,
                      "slice / select at rank ≥ 5 → on its rank-≤4 source, or on a rank-≤4 view")
low_rank_reduction = Rule("low_rank_reduction", REDUCTIONS, _match_reduction, _rewrite_reduction,
                          "a reduction over adjacent axes at rank ≥ 5 → on a rank-≤4 view")
low_rank_linear = Rule("low_rank_linear", (aten.linear,), _match_linear, _rewrite_linear,
                       "linear(x_A0…C) at rank ≥ 5 → linear(view(x, [A0, ∏A, C]))")
low_rank_sdpa = Rule("low_rank_sdpa", (aten.scaled_dot_product_attention,), _match_sdpa, _rewrite_sdpa,
                     "sdpa of rank ≥ 5 → sdpa of its batch axes merged (rank 4)")
low_rank_squeeze = Rule("low_rank_squeeze", (aten.squeeze, aten.unsqueeze), _match_squeeze, _rewrite_squeeze,
                        "squeeze / unsqueeze at rank ≥ 5 → reshape")
low_rank_elementwise = Rule("low_rank_elementwise", ELEMENTWISE, _match_elementwise, _rewrite_elementwise,
                            "elementwise f at rank ≥ 5 → f on views merging axes its operands broadcast alike")
low_rank_cat_pad = Rule("low_rank_cat_pad", (aten.cat, aten.constant_pad_nd), _match_cat_pad, _rewrite_cat_pad,
                        "cat / constant_pad_nd at rank ≥ 5 → on a view merging the axes it leaves alone")
low_rank_einsum = Rule("low_rank_einsum", (aten.einsum,), _match_einsum, _rewrite_einsum,
                       "einsum('...ab,...cd->...ef') at rank ≥ 5 → its '...' axes merged into one")
RANK_VIEW_RULES = [low_rank_slice, low_rank_reduction, low_rank_linear, low_rank_sdpa, low_rank_squeeze,
                   low_rank_cat_pad, low_rank_einsum]
# in cleanup, after attention: the attention pass reads a mask added in a rank-5 regrouped view of
# the logits (Swin's shift mask) as it is written
LATE_RANK_VIEW_RULES = [low_rank_elementwise]
