"""Attention masks as fp16-safe additive tensors laid out (B, Sk, 1, Sq).

``additive_mask`` turns an sdpa ``attn_mask`` (bool: keep where True; float: added to the
logits) and ``is_causal`` into additive masks for the channels-first attention, rank ≤ 4: 0
where a key is kept, ``hardware.MASKED_LOGIT`` (−1e4, finite in fp16) where it is not — never ``-inf`` or
dtype-min. Where a query can be left with no key (a mask computed from the inputs — padding,
left padding under a causal part — or a constant mask with an empty row), the lowering gives
what torch computes: zeros for a bool mask (``MaskPlan.zero_rows``: torch's sdpa); for a float
mask of dtype-min entries, which absorb the logits, the softmax is uniform over the keys at the
row's highest mask value (``MaskPlan.empty_rows``: all keys when every masked entry holds one
value, those masked once when an entry masked twice holds a lower one: dtype-min + dtype-min =
−inf); a float mask of −1e4 entries leaves such a row attending by its logits, as in torch.
A float model mask (not a padding form) keeps its two levels (−inf at −2e4) and tells at run
time whether a row's mask absorbs (``MaskPlan.absorbed``).

Padding masks: when the mask is a function of one integer graph input p (B, Sk) (the attention
mask a Hugging Face model takes) whose values are only "keep" (0, or True) and "masked" (≤ −1e4,
or False) — not a mask that also adds a position bias (T5) —, ``padding_form`` probes it: it
evaluates the mask's subgraph for p = 1 and for random 0/1 draws and checks that mask(p) =
static ∧ (p ≠ 0) for every draw, and reads the values of the entries masked by the static part,
by the padding, and by both (one value masked once, at most one lower value masked twice). When it
holds, the model's mask builder (gathers, logical ops) is replaced by arithmetic on p plus a
constant for the static part (e.g. causal); otherwise the model's mask is kept and converted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.fx import Graph, GraphModule, Node

from ane_rewrite.hardware import MASKED_LOGIT
from ane_rewrite.rewrite.graph import aten, shape, val

PROBE_DRAWS = 4
ABSORBS = -1e30  # a mask value this low absorbs any logit in fp32 (ulp(1e30) ≈ 7e22): dtype-min


def _ancestors(node: Node) -> list[Node]:
    seen, stack = {}, [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen[n] = None
        stack.extend(n.all_input_nodes)
    return [n for n in node.graph.nodes if n in seen]


def _evaluate(gm: GraphModule, nodes: list[Node], out: Node, placeholder: Node | None = None,
              value: torch.Tensor | None = None):
    """``out`` computed from ``nodes`` (its ancestors) with ``placeholder`` = ``value``; None
    when it reads another input."""
    g = Graph()
    env: dict[Node, Node] = {}
    for n in nodes:
        if n is placeholder:
            env[n] = g.placeholder("p")
        elif n.op == "placeholder":
            return None
        else:
            env[n] = g.node_copy(n, lambda a: env[a])
    g.output(env[out])
    with torch.no_grad():
        return GraphModule(gm, g)(*([] if placeholder is None else [value]))


def _keep(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Where a mask keeps a key; None for an additive mask that also carries values (a position
    bias): only a float mask of 0 and masked entries (≤ MASKED_LOGIT) is a keep pattern."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask <= MASKED_LOGIT)).all()):
        return None
    return mask == 0


@dataclass(frozen=True)
class PaddingForm:
    pad: Node               # the integer input p (B, Sk)
    static: torch.Tensor    # what the mask keeps for p = 1: (Bs, Hs, Sq, Sk)
    two_levels: bool        # an entry masked twice holds a lower value than one masked once
    absorbs: bool           # the masked values absorb any logit in fp32 (dtype-min)


def _levels(mask: torch.Tensor, static: torch.Tensor, pad_keep: torch.Tensor) -> dict[str, set]:
    """The values of a float mask where only its static part masks, only the padding does, and both."""
    parts = {"static": ~static & pad_keep, "pad": static & ~pad_keep, "both": ~static & ~pad_keep}
    return {k: set(mask[where.expand_as(mask)].tolist()) for k, where in parts.items()}


def padding_form(gm: GraphModule, mask: Node) -> PaddingForm | None:
    """The form mask(p) = static ∧ (p ≠ 0)[:, None, None, :], with the levels of a float mask
    (one masked value, an entry masked twice at most one lower one), else None."""
    nodes = _ancestors(mask)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    p = inputs[0]
    p_val, m_shape = val(p), shape(mask)
    if p_val is None or p_val.is_floating_point() or p_val.dim() != 2 or m_shape is None or len(m_shape) != 4:
        return None
    b, sk = p_val.shape
    if m_shape[-1] != sk or m_shape[0] not in (1, b):
        return None
    ones = torch.ones(b, sk, dtype=p_val.dtype)
    static = _keep(_evaluate(gm, nodes, mask, p, ones))
    if static is None:
        return None
    gen = torch.Generator().manual_seed(0)
    levels: dict[str, set] = {"static": set(), "pad": set(), "both": set()}
    for _ in range(PROBE_DRAWS):
        draw = torch.randint(0, 2, (b, sk), generator=gen, dtype=p_val.dtype)
        value = _evaluate(gm, nodes, mask, p, draw)
        got, pad_keep = _keep(value), (draw != 0)[:, None, None, :]
        if got is None or not torch.equal(got, static & pad_keep):
            return None
        if value.is_floating_point():
            for k, seen in _levels(value, static, pad_keep).items():
                levels[k] |= seen
    if val(mask).dtype == torch.bool:
        return PaddingForm(p, static, two_levels=True, absorbs=False)
    once, twice = levels["static"] | levels["pad"], levels["both"]
    if len(once) > 1 or len(twice) > 1 or (once and twice and max(twice) > max(once)):
        return None  # masked values the two-level form cannot hold: the mask is kept as it is
    masked = once | twice
    return PaddingForm(p, static, two_levels=bool(once and twice and max(twice) < max(once)),
                       absorbs=bool(masked) and max(masked) <= ABSORBS)


def _static_heads(rw, keep_BHQK: torch.Tensor, dtype: torch.dtype) -> list[Node]:
    """A constant keep mask (Bs, Hs, Q, K) → one additive (Bs, K, 1, Q) constant per head."""
    add = torch.where(keep_BHQK, 0.0, MASKED_LOGIT).to(dtype).permute(0, 1, 3, 2)  # (Bs, Hs, K, Q)
    return [rw.constant("mask", add[:, h].unsqueeze(2).contiguous()) for h in range(add.shape[1])]


@dataclass
class MaskPlan:
    adds: list[Node]   # additive (Bm, Sk, 1, Sq), one per head, or one shared by all heads
    zero_rows: bool    # a query whose keys are all masked gets zeros (torch's bool-mask sdpa)
    empty_rows: bool = False  # … a float mask's: uniform over the keys at its highest mask value
    absorbed: list[Node] | None = None  # per head (or shared): 1.0 where the original row's mask
    #                                     absorbs the logits, known at run time only; None: always


def row_valid(rw, add_BK1Q: Node) -> Node:
    """1.0 where a query keeps at least one key, else 0.0: (Bm, 1, 1, Sq)."""
    best = rw.call(aten.amax.default, add_BK1Q, [1], True)
    return rw.call(aten._to_copy.default, rw.call(aten.gt.Scalar, best, MASKED_LOGIT / 2), dtype=val(add_BK1Q).dtype)


def additive_mask(rw, mask: Node | None, is_causal: bool, sq: int, sk: int,
                  dtype: torch.dtype = torch.float32, replaces: bool = False) -> MaskPlan | None:
    """The additive masks of one attention; None when there is nothing to mask. Every tensor
    is rank ≤ 4. ``replaces``: the mask stands for a masked fill, which replaces the logits, so
    a row it empties is uniform in torch whatever its logits were."""
    static = torch.ones(1, 1, sq, sk, dtype=torch.bool)
    if is_causal:
        static &= torch.ones(sq, sk, dtype=torch.bool).tril()
    if mask is None:
        return MaskPlan(_static_heads(rw, static, dtype), zero_rows=False) if not bool(static.all()) else None
    boolean = val(mask).dtype == torch.bool
    form = padding_form(rw.gm, mask)
    if form is None:
        heads, absorbed = _model_mask(rw, mask, static if is_causal else None, dtype)
        if not _may_empty_a_row(rw.gm, mask, static if is_causal else None):
            return MaskPlan(heads, zero_rows=False)  # (the unread run-time test is dead code, removed)
        if boolean:
            return MaskPlan(heads, zero_rows=True)
        return MaskPlan(heads, zero_rows=False, empty_rows=True, absorbed=None if replaces else absorbed)
    static = static & form.static
    parts = [] if bool(static.all()) else _static_heads(rw, static, dtype)
    # (B, Sk) ints → (B, Sk, 1, 1): 0 where p ≠ 0, MASKED_LOGIT where p = 0
    pad = form.pad
    keep = rw.call(aten.clamp.default, rw.call(aten._to_copy.default, pad, dtype=dtype), 0.0, 1.0)
    add = rw.call(aten.mul.Tensor, rw.call(aten.sub.Tensor, keep, 1.0), -MASKED_LOGIT)
    pad_BK11 = rw.call(aten.reshape.default, add, [shape(pad)[0], shape(pad)[1], 1, 1])
    combine = aten.add.Tensor if form.two_levels else aten.minimum.default
    adds = [rw.call(combine, pad_BK11, part) for part in parts] or [pad_BK11]
    if boolean:
        return MaskPlan(adds, zero_rows=True)
    # a padding input can empty any row (all zeros; left padding under a causal part)
    if form.absorbs or replaces:
        return MaskPlan(adds, zero_rows=False, empty_rows=True)
    return MaskPlan(adds, zero_rows=False)  # an emptied row attends by its logits, as in torch


def _may_empty_a_row(gm: GraphModule, mask: Node, static: torch.Tensor | None) -> bool:
    """Whether some input can leave a query with no key: a mask computed from the graph's
    inputs can; a constant one can where one of its rows (with the causal part) is all masked."""
    constant = _evaluate(gm, _ancestors(mask), mask)
    if constant is None:
        return True
    keep = constant if constant.dtype == torch.bool else constant > MASKED_LOGIT
    if static is not None:
        keep = keep & static
    return not bool(keep.any(-1).all())


def _model_mask(rw, mask: Node, static: torch.Tensor | None, dtype: torch.dtype) -> tuple[list[Node], list[Node]]:
    """The model's own mask, converted per head: bool → (keep − 1)·1e4; float → clamped at
    −1e4, an −inf (an entry masked twice over, dtype-min + dtype-min) at −2e4 so that it stays
    below the entries masked once. With it, per head, 1.0 where the original row's highest
    mask value absorbs the logits (≤ ``ABSORBS``)."""
    absorbed = None
    if val(mask).dtype == torch.bool:
        keep = rw.call(aten._to_copy.default, mask, dtype=dtype)
        add = rw.call(aten.mul.Tensor, rw.call(aten.sub.Tensor, keep, 1.0), -MASKED_LOGIT)
    else:
        clamped = rw.call(aten.clamp.default, mask, MASKED_LOGIT)
        twice = rw.call(aten._to_copy.default, rw.call(aten.eq.Scalar, mask, float("-inf")), dtype=val(mask).dtype)
        add = rw.call(aten.add.Tensor, clamped, rw.call(aten.mul.Tensor, twice, MASKED_LOGIT))
        if val(mask).dtype != dtype:  # the logits' dtype (a bf16 model's float32 mask)
            add = rw.call(aten._to_copy.default, add, dtype=dtype)
        top = rw.call(aten.amax.default, mask, [-1], True)
        absorbed = rw.call(aten._to_copy.default, rw.call(aten.le.Scalar, top, ABSORBS), dtype=dtype)
    heads = _per_head_BK1Q(rw, add)
    if static is not None:
        causal = _static_heads(rw, static, dtype)[0]
        heads = [rw.call(aten.add.Tensor, h, causal) for h in heads]
    return heads, (_per_head_BK1Q(rw, absorbed) if absorbed is not None else [])


def _per_head_BK1Q(rw, x: Node) -> list[Node]:
    """A (…, Q, K) mask-shaped tensor → one (B, K, 1, Q) tensor per head of its axis 1."""
    while len(shape(x)) < 4:
        x = rw.call(aten.unsqueeze.default, x, 0)
    x_BHKQ = rw.call(aten.permute.default, x, [0, 1, 3, 2])
    return [rw.call(aten.unsqueeze.default, rw.call(aten.select.int, x_BHKQ, 1, h), 2)
            for h in range(shape(x_BHKQ)[1])]
