"""Rotary position embeddings applied on the channels-first tensor the heads are split from.

Glossary: B batch, C channels (H heads × D), H heads, D head size, R rotary dims (R ≤ D), S sequence.

    a · cos + rot(a) · sin        a = heads(y_BC1S)[..., :R] (B, H, S, R) (or the whole head, R = D);
                                  rot(a)[..., i] = ±a[..., π(i)], a signed block swap of the last axis
        → heads'(y_rot),  y_rot = y · tile(cos) + rot_C(y) · tile(sin)                (B, C, 1, S)
          tile(t): t laid out (B, 1, R, S), filled to D channels (cos with 1, sin with 0), repeated
                   for the H heads; rot_C(y): rot on y₄[:, :, :R] of y₄ = y.view(B, H, D, S)

``heads'`` is a's own chain of data movement, replayed on y_rot, so attention finds q and k as
head splits again. rot is found from graph structure, not from a spelling: the ops between a
and rot(a) (slices, negations, concatenations, stacks, reshapes) are replayed on signed indices,
which must give rot(a)[..., i] = s(i) · a[..., π(i)] with π swapping the two halves of an axis
of size 2 in a factorisation R = outer × 2 × inner: inner = R/2 is rotate-half (Llama, Qwen,
Mistral, Gemma, Phi, GPT-NeoX), inner = 1 the interleaved pairs (GPT-J, CodeGen). On
y₄[:, :, :R] (B, H, R, S) the same swap is ``cat₂(∓ halves)`` of its (B, H·outer, 2·inner, S)
view: no copy touches the last axis (S). cos and sin are any tensors broadcast over the heads
(computed from position ids, or constants); their tiles are computed once and shared.

A partial rotary leaves a's other D − R channels as they are, and a rotation of positions
[p, e) only (a = q[:, :, p:e]: a ViT's class and register tokens, EVA-02) leaves the others: the
tiles hold cos 1 and sin 0 there, so y_rot is y outside what was turned. The model's
``cat([rope(q[..., :R]), q[..., R:]], -1)`` (or ``cat([q[:, :, :p], rope(q[:, :, p:])], 2)``) then
concatenates a slice of the rotated head split and the rest of the original, which
``rejoin_slices`` folds back into the rotated head split.

Why: the per-head lowering needs q and k as head splits of one (B, C, 1, S) tensor; a rotation
computed on (B, H, S, D) would put a transpose back to channels-last in front of every
attention (docs/ane.md#principles, 3 and #modern-decoders).
"""
from __future__ import annotations

import math
import operator

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, is_op, normalize_dim, rank, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._heads import _chain, head_channels
from .cleanup import CANONICAL_RULES

SIGNED_MOVES = (aten.slice, aten.neg, aten.cat, aten.stack, aten.reshape, aten.view, aten._unsafe_view,
                aten.unsqueeze, aten.squeeze, aten.permute, aten.transpose, aten.select, aten.unbind,
                aten.clone, aten.alias, aten.flatten)


def _derived(r: Node, a: Node) -> list[Node] | None:
    """The nodes computing r from a alone by signed data movement (in graph order), else None."""
    found, stack = {}, [r]
    while stack:
        n = stack.pop()
        if n is a or n in found:
            continue
        if not (is_op(n, *SIGNED_MOVES) or (n.op == "call_function" and n.target is operator.getitem)):
            return None
        found[n] = True
        stack.extend(n.all_input_nodes)
    return sorted(found) if found else None  # fx nodes order as the graph does


def _signed_permutation(a: Node, r: Node) -> tuple[list[int], list[int]] | None:
    """r[..., i] = sign[i] · a[..., perm[i]] for every leading index → (perm, sign), else None."""
    nodes = _derived(r, a)
    if nodes is None or shape(r) != shape(a):
        return None
    a_shape = shape(a)
    values = {a: (torch.arange(torch.Size(a_shape).numel(), dtype=torch.float64) + 1).view(a_shape)}
    for n in nodes:
        args = torch.fx.node.map_arg(n.args, lambda x: values[x])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda x: values[x])
        values[n] = n.target(*args, **kwargs)
    out, d = values[r], a_shape[-1]
    src, sign = out.abs().long() - 1, out.sign().long()
    pos = torch.arange(src.numel()).view(src.shape)
    if not torch.equal(src // d, pos // d):
        return None
    perm, first = (src % d).reshape(-1, d), sign.reshape(-1, d)
    if not (torch.equal(perm, perm[:1].expand_as(perm)) and torch.equal(first, first[:1].expand_as(first))):
        return None
    return perm[0].tolist(), first[0].tolist()


def _block_swap(perm: list[int], sign: list[int]) -> tuple[int, int, int] | None:
    """perm swaps the halves of the size-2 axis of R = outer × 2 × inner, sign s₀ on the first
    half and s₁ on the second → (inner, s₀, s₁), else None."""
    n = len(perm)
    for inner in (n // 2, *range(1, n // 2)):
        if inner == 0 or n % (2 * inner):
            continue
        ok = all(perm[i] == i + inner * (1 if (i // inner) % 2 == 0 else -1) for i in range(n))
        s0, s1 = sign[0], sign[inner]
        if ok and all(sign[i] == (s0 if (i // inner) % 2 == 0 else s1) for i in range(n)) and s0 == -s1:
            return inner, s0, s1
    return None


def _mul_parts(node: Node):
    return list(node.args[:2]) if is_op(node, aten.mul.Tensor) and len(node.args) == 2 else None


def _table(t, a_shape, head_axis: int) -> bool:
    """t broadcasts against a (B, H, S, R) — or (B, S, H, R) — without varying across heads."""
    if not isinstance(t, Node) or rank(t) is None or rank(t) > 4:
        return False
    padded = (1,) * (4 - rank(t)) + tuple(shape(t))
    return padded[head_axis] == 1 and all(p in (1, s) for p, s in zip(padded, a_shape))


def _groups(a: Node, heads):
    """Where the rotated channels sit: (src, chain above src, step, off): src (B, G·step, 1, S) is
    cut into G groups of ``step`` channels, and each head's rotated channels are [off, off + R) of
    one group. The smallest such src on a's chain (a channel slice holding every head) is taken;
    else the whole source, every group of it rotated (a fused projection whose q and k heads are
    interleaved with others: the extra groups are computed and not read). A reason when neither."""
    bases, r = list(heads.bases), heads.dim
    source, chain = _chain(a)
    c = shape(source)[1]
    step = bases[1] - bases[0] if len(bases) > 1 else c
    if all(b - bases[0] == i * step for i, b in enumerate(bases)) and step >= r:
        for i in range(len(chain)):  # from the source up: a channel slice holding every head
            src = chain[len(chain) - 1 - i]
            if is_op(src, aten.slice.Tensor) and rank(src) == 4 and normalize_dim(src.args[1], 4) == 1 \
                    and (len(src.args) < 5 or src.args[4] == 1):
                off = bases[0] - (src.args[2] or 0)
                if 0 <= off and off + r <= step and len(bases) * step == shape(src)[1]:
                    return src, chain[:len(chain) - 1 - i], step, off
    spacing = math.gcd(*[b - bases[0] for b in bases[1:]], c)
    if spacing >= r and bases[0] % spacing + r <= spacing:
        return source, chain, spacing, bases[0] % spacing
    return "the rotated heads' channels are not groups of one size"


def _match(node: Node) -> MatchResult:
    if not is_op(node, aten.add.Tensor) or len(node.args) != 2 or rank(node) != 4:
        return MatchResult.skip()
    left, right = _mul_parts(node.args[0]), _mul_parts(node.args[1])
    if left is None or right is None:
        return MatchResult.skip()
    for (p, q) in ((left, right), (right, left)):
        for a, cos in (p, p[::-1]):
            for r, sin in (q, q[::-1]):
                if not (isinstance(a, Node) and isinstance(r, Node)):
                    continue
                found = _signed_permutation(a, r)
                swap = _block_swap(*found) if found is not None else None
                if swap is None:
                    continue
                for head_axis, tail in ((1, None), (2, _heads_second)):
                    whole, positions = a, None
                    heads = head_channels(a, tail=tail)
                    if heads is None and _is_slice(a, 3 - head_axis):  # positions [p, e) only (EVA's prefix)
                        whole, positions = a.args[0], _bounds(a)
                        heads = head_channels(whole, tail=tail)
                    if heads is None or heads.swapped or heads.spatial:
                        continue
                    if not (_table(cos, shape(a), head_axis) and _table(sin, shape(a), head_axis)):
                        return MatchResult.fail("cos and sin vary across heads")
                    groups = _groups(whole, heads)
                    if isinstance(groups, str):
                        return MatchResult.fail(groups)
                    src, chain, step, off = groups
                    return MatchResult.ok(a=a, whole=whole, positions=positions, cos=cos, sin=sin, swap=swap,
                                          rdim=heads.dim, src=src, chain=chain, step=step, off=off,
                                          head_axis=head_axis)
                return MatchResult.fail(f"rotated {shape(a)} is not a head split of a (B, C, 1, S) tensor")
    return MatchResult.skip()


def _around(middle: Node, others: list[Node], off: int) -> list[Node]:
    """The rotated block between the channels before it (when off > 0) and after it."""
    return [others[0], middle, *others[1:]] if off else [middle, *others]


def _heads_second(t):
    return t.transpose(1, 2)


def _rewrite(rw, node: Node, m: dict) -> Node:
    (inner, s0, _), src, step, off, rdim = m["swap"], m["src"], m["step"], m["off"], m["rdim"]
    b, c, _, s = shape(src)
    h = c // step  # groups of channels: the heads, or every group of a fused projection
    y4 = rw.call(aten.reshape.default, src, [b, h, step, s])                   # (B, H, step, S)
    part = rw.call(aten.slice.Tensor, y4, 2, off, off + rdim) if rdim != step else y4   # (B, H, R, S)
    halves = rw.call(aten.reshape.default, part, [b, h * rdim // (2 * inner), 2 * inner, s])
    first = rw.call(aten.slice.Tensor, halves, 2, 0, inner)
    second = rw.call(aten.slice.Tensor, halves, 2, inner, 2 * inner)
    out0, out1 = (rw.call(aten.neg.default, second), first) if s0 < 0 else (second, rw.call(aten.neg.default, first))
    rot = rw.call(aten.reshape.default, rw.call(aten.cat.default, [out0, out1], 2), [b, h, rdim, s])
    around = [(lo, hi) for lo, hi in ((0, off), (off + rdim, step)) if hi > lo]  # channels not rotated
    if around:  # multiplied by sin's 0 here (and by cos's 1 in y · cos)
        rot = rw.call(aten.cat.default, _around(rot, [rw.call(aten.slice.Tensor, y4, 2, lo, hi) for lo, hi in around],
                                                off), 2)
    rot_BC1S = rw.call(aten.reshape.default, rot, [b, c, 1, s])

    def tiled(t, fill: float):  # (…, S, R) the same for every head → (Bt, C, 1, St), fill elsewhere
        padded = [1] * (4 - rank(t)) + list(shape(t))
        order = [0, 1, 3, 2] if m["head_axis"] == 1 else [0, 2, 3, 1]
        t4 = rw.call(aten.permute.default, rw.call(aten.reshape.default, t, padded), order)  # (Bt, 1, R, St)
        bt, _, r_t, st = shape(t4)
        if m["positions"] is not None:  # fill the positions outside [p, e): y there is y
            (lo, hi), st = m["positions"], s
            t4 = rw.call(aten.expand.default, t4, [bt, 1, r_t, hi - lo])
            edges = [(0, lo), (hi, s)]
            fills = [rw.constant("rotary_fill", torch.full((bt, 1, r_t, b_ - a_), fill, dtype=t.meta["val"].dtype))
                     for a_, b_ in edges if b_ > a_]
            t4 = rw.call(aten.cat.default, _around(t4, fills, lo), 3)
        if around:
            fills = [rw.constant("rotary_fill", torch.full((bt, 1, hi - lo, st), fill, dtype=t.meta["val"].dtype))
                     for lo, hi in around]
            t4 = rw.call(aten.cat.default, _around(t4, fills, off), 2)
        return rw.call(aten.reshape.default, rw.call(aten.expand.default, t4, [bt, h, step, st]), [bt, c, 1, st])

    y_rot = rw.call(aten.add.Tensor, rw.call(aten.mul.Tensor, src, tiled(m["cos"], 1.0)),
                    rw.call(aten.mul.Tensor, rot_BC1S, tiled(m["sin"], 0.0)))
    y_rot.meta["ane_rotary_of"] = (src, off, rdim)
    values = {src: y_rot}
    for n in reversed(m["chain"]):
        args = torch.fx.node.map_arg(n.args, lambda x: values.get(x, x))
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda x: values.get(x, x))
        values[n] = rw.call(n.target, *args, **kwargs)
    a = m["a"]
    if m["positions"] is not None:
        out = rw.call(aten.slice.Tensor, values[m["whole"]], 3 - m["head_axis"], *m["positions"])
        out.meta["ane_rotary_part"] = (values[m["whole"]], m["whole"])
        return out
    if is_op(a, aten.slice.Tensor) and a.args[0] in values:
        values[a].meta["ane_rotary_part"] = (values[a.args[0]], a.args[0])
    return values[a]


def _bounds(sl: Node) -> tuple[int, int]:
    size = shape(sl.args[0])[normalize_dim(sl.args[1], rank(sl))]
    start = sl.args[2] if len(sl.args) > 2 and sl.args[2] is not None else 0
    end = sl.args[3] if len(sl.args) > 3 and sl.args[3] is not None else size
    start, end = (v + size if v < 0 else v for v in (start, end))
    return min(start, size), min(end, size)


def _is_slice(node, dim: int | None = None) -> bool:
    """A unit-step slice (of axis ``dim``, by default the last)."""
    if not is_op(node, aten.slice.Tensor) or rank(node) is None:
        return False
    want = rank(node) - 1 if dim is None else dim
    return normalize_dim(node.args[1], rank(node)) == want and (len(node.args) < 5 or node.args[4] == 1)


def _match_rejoin(node: Node) -> MatchResult:
    """cat([rotated part of x_rot, the rest of x], d) (in either order) → x_rot: outside the part
    a rotary rewrite turned, x_rot holds x's values (y · 1 + rot · 0)."""
    parts, r = node.args[0], rank(node)
    if not is_op(node, aten.cat) or len(parts) != 2 or r is None:
        return MatchResult.skip()
    dim = normalize_dim(node.args[1] if len(node.args) > 1 else 0, r)
    for rotated, rest in (parts, parts[::-1]):
        info = rotated.meta.get("ane_rotary_part") if isinstance(rotated, Node) else None
        if info is None or not (_is_slice(rotated, dim) and _is_slice(rest, dim)):
            continue
        x_rot, x = info
        if rotated.args[0] is not x_rot or rest.args[0] is not x:
            continue
        first, second = (rotated, rest) if parts[0] is rotated else (rest, rotated)
        size = shape(x)[dim]
        if _bounds(first)[0] == 0 and _bounds(first)[1] == _bounds(second)[0] and _bounds(second)[1] == size:
            return MatchResult.ok(x_rot=x_rot)
    return MatchResult.skip()


def _rewrite_rejoin(rw, node: Node, m: dict) -> Node:
    return m["x_rot"]


rotary_on_channels = Rule("rotary_on_channels", (aten.add.Tensor,), _match, _rewrite,
                          "a · cos + rot(a) · sin, a = heads(y) → heads(y_rot), the rotation on (B, H, R, S)")
rejoin_slices = Rule("rejoin_slices", (aten.cat,), _match_rejoin, _rewrite_rejoin,
                     "cat([heads(y_rot)[..., :R], heads(y)[..., R:]], -1) → heads(y_rot) (also along the sequence)")

rotary = Pass("rotary", [rotary_on_channels, rejoin_slices, *CANONICAL_RULES], __doc__)
