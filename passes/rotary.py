"""Rotary position embeddings applied on the channels-first tensor the heads are split from.

Glossary: B batch, C channels (H heads × D), H heads, D head size, R rotary dims (R ≤ D), S sequence.

    a · cos + rot(a) · sin        a = heads(y_BC1S)[..., :R] (B, H, S, R) (or the whole head, R = D);
                                  rot(a)[..., i] = ±a[..., π(i)], a signed block swap of the last axis
        → heads'(y_rot),  y_rot = (y₄ · tile(cos)).view(B, C, 1, S) + (rot(y₄) · tile(sin)).view(B, C, 1, S)
          y₄ = y.view(B, H, D, S); tile(t): t laid out (B, 1, R, S), filled to D channels (cos
                   with 1, sin with 0), broadcast over the H heads (a table of D × S, not C × S: a
                   constant table is read once per head group, not stored per channel); rot on
                   y₄[:, :, :R]

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
``rejoin_slices`` folds back into the rotated head split. a is read through scalar factors and
that token part in any order (``_rotary_parts.operand``): rope(c · heads(y)) (ESM scales q first)
is heads(y) turned with c·cos and c·sin, the factor on the small tables rather than on the
activations; a prefix cut by ``split`` (DINOv3) is a token part as a slice is.

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
from ._rotary_parts import PART_META, Operand, operand, rejoin_slices
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
                    op = Operand(a, None)
                    heads = head_channels(a, tail=tail)
                    if heads is None:  # c · heads(y) (ESM), or its patch tokens only (EVA, DINOv3)
                        op = operand(a, 3 - head_axis) or op
                        heads = head_channels(op.whole, tail=tail) if op.whole is not a else None
                    if heads is None or heads.swapped or heads.spatial:
                        continue
                    if not (_table(cos, shape(a), head_axis) and _table(sin, shape(a), head_axis)):
                        return MatchResult.fail("cos and sin vary across heads")
                    groups = _groups(op.whole, heads)
                    if isinstance(groups, str):
                        return MatchResult.fail(groups)
                    src, chain, step, off = groups
                    return MatchResult.ok(a=a, operand=op, cos=cos, sin=sin, swap=swap,
                                          rdim=heads.dim, src=src, chain=chain, step=step, off=off,
                                          head_axis=head_axis)
                return MatchResult.fail(f"rotated {shape(a)} is not a head split of a (B, C, 1, S) tensor, nor a scalar "
                                        "multiple or a part of the tokens of one")
    return MatchResult.skip()


def _around(middle: Node, others: list[Node], off: int) -> list[Node]:
    """The rotated block between the channels before it (when off > 0) and after it."""
    return [others[0], middle, *others[1:]] if off else [middle, *others]


def _heads_second(t):
    return t.transpose(1, 2)


def _rewrite(rw, node: Node, m: dict) -> Node:
    (inner, s0, _), src, step, off, rdim = m["swap"], m["src"], m["step"], m["off"], m["rdim"]
    op: Operand = m["operand"]
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

    def tiled(t, fill: float):  # (…, S, R) the same for every head → (Bt, 1, step, St), fill elsewhere
        padded = [1] * (4 - rank(t)) + list(shape(t))
        order = [0, 1, 3, 2] if m["head_axis"] == 1 else [0, 2, 3, 1]
        t4 = rw.call(aten.permute.default, rw.call(aten.reshape.default, t, padded), order)  # (Bt, 1, R, St)
        if op.scale != 1.0:  # rope(c · a) = a · c·cos + rot(a) · c·sin: the factor on the small table
            t4 = rw.call(aten.mul.Tensor, t4, op.scale)
        bt, _, r_t, st = shape(t4)
        if op.positions is not None:  # fill the positions outside [p, e): y there is y
            (lo, hi), st = op.positions, s
            t4 = rw.call(aten.expand.default, t4, [bt, 1, r_t, hi - lo])
            edges = [(0, lo), (hi, s)]
            fills = [rw.constant("rotary_fill", torch.full((bt, 1, r_t, b_ - a_), fill, dtype=t.meta["val"].dtype))
                     for a_, b_ in edges if b_ > a_]
            t4 = rw.call(aten.cat.default, _around(t4, fills, lo), 3)
        if around:
            fills = [rw.constant("rotary_fill", torch.full((bt, 1, hi - lo, st), fill, dtype=t.meta["val"].dtype))
                     for lo, hi in around]
            t4 = rw.call(aten.cat.default, _around(t4, fills, off), 2)
        return t4

    def times(x4, t, fill: float):
        """x4 · table on the (B, H, step, S) view, the table broadcast over the heads (not stored
        per channel); one head: on (B, C, 1, S), the table a view of it."""
        table = tiled(t, fill)
        if h == 1:
            bt, _, _, st = shape(table)
            return rw.call(aten.mul.Tensor, rw.call(aten.reshape.default, x4, [b, c, 1, s]),
                           rw.call(aten.reshape.default, table, [bt, c, 1, st]))
        return rw.call(aten.reshape.default, rw.call(aten.mul.Tensor, x4, table), [b, c, 1, s])

    y_rot = rw.call(aten.add.Tensor, times(y4, m["cos"], op.rest_scale), times(rot, m["sin"], 0.0))  # (B, C, 1, S)
    y_rot.meta["ane_rotary_of"] = (src, off, rdim)
    values = {src: y_rot}
    for n in reversed(m["chain"]):
        args = torch.fx.node.map_arg(n.args, lambda x: values.get(x, x))
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda x: values.get(x, x))
        values[n] = rw.call(n.target, *args, **kwargs)
    a, turned = m["a"], values[op.whole]
    if op.positions is not None:
        out = rw.call(aten.slice.Tensor, turned, 3 - m["head_axis"], *op.positions)
        out.meta[PART_META] = (turned, op.rest_of)  # outside [p, e), turned holds rest_of's values
        return out
    if is_op(a, aten.slice.Tensor) and a.args[0] in values:  # a partial rotary's q[..., :R]
        values[a].meta[PART_META] = (values[a.args[0]], a.args[0])
    return turned


rotary_on_channels = Rule("rotary_on_channels", (aten.add.Tensor,), _match, _rewrite,
                          "a · cos + rot(a) · sin, a = heads(y) → heads(y_rot), the rotation on (B, H, R, S)")

rotary = Pass("rotary", [rotary_on_channels, rejoin_slices, *CANONICAL_RULES], __doc__)
