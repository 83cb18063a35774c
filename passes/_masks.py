"""Attention masks as fp16-safe additive tensors laid out (B, Sk, 1, Sq).

``additive_mask`` turns an sdpa ``attn_mask`` (bool: keep where True; float: added to the
logits) and ``is_causal`` into additive masks for the channels-first attention, rank ≤ 4: 0
where a key is kept, ``hardware.MASKED_LOGIT`` (−1e4, finite in fp16) where it is not — never ``-inf`` or
dtype-min. A bool mask can leave a query with no key at all; torch's sdpa returns zeros for it,
and so does the lowering (``MaskPlan.zero_rows``, ``row_valid``). A float mask whose row is all
dtype-min averages the values in torch; with −1e4 such a row would attend by its logits, so
where a tokenizer's (right-padded) mask can empty a row — a sliding window over padding —
the lowering gives the mean of the values there too (``MaskPlan.mean_rows``); a left-padded
mask can still empty a causal row the static part keeps, and such a row attends by its
logits (padding outputs only).

Padding masks: when the mask is a function of one integer graph input p (B, Sk) (the attention
mask a Hugging Face model takes) whose values are only "keep" (0, or True) and "masked" (≤ −1e4,
or False) — not a mask that also adds a position bias (T5) —, ``padding_form`` probes it: it evaluates the mask's subgraph for
p = 1 and for random 0/1 draws and checks that mask(p) = static ∧ (p ≠ 0) for every draw. When it
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


def _ancestors(node: Node) -> list[Node]:
    seen, stack = {}, [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen[n] = None
        stack.extend(n.all_input_nodes)
    return [n for n in node.graph.nodes if n in seen]


def _evaluate(gm: GraphModule, nodes: list[Node], out: Node, placeholder: Node, value: torch.Tensor):
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
        return GraphModule(gm, g)(value)


def _keep(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Where a mask keeps a key; None for an additive mask that also carries values (a position
    bias): only a float mask of 0 and masked entries (≤ MASKED_LOGIT) is a keep pattern."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask <= MASKED_LOGIT)).all()):
        return None
    return mask == 0


def padding_form(gm: GraphModule, mask: Node) -> tuple[Node, torch.Tensor] | None:
    """(p, static_keep) when mask(p) = static_keep ∧ (p ≠ 0)[:, None, None, :], else None."""
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
    for _ in range(PROBE_DRAWS):
        draw = torch.randint(0, 2, (b, sk), generator=gen, dtype=p_val.dtype)
        got = _keep(_evaluate(gm, nodes, mask, p, draw))
        if got is None or not torch.equal(got, static & (draw != 0)[:, None, None, :]):
            return None
    return p, static


def _static_heads(rw, keep_BHQK: torch.Tensor, dtype: torch.dtype) -> list[Node]:
    """A constant keep mask (Bs, Hs, Q, K) → one additive (Bs, K, 1, Q) constant per head."""
    add = torch.where(keep_BHQK, 0.0, MASKED_LOGIT).to(dtype).permute(0, 1, 3, 2)  # (Bs, Hs, K, Q)
    return [rw.constant("mask", add[:, h].unsqueeze(2).contiguous()) for h in range(add.shape[1])]


@dataclass
class MaskPlan:
    adds: list[Node]   # additive (Bm, Sk, 1, Sq), one per head, or one shared by all heads
    zero_rows: bool    # a query whose keys are all masked gets zeros (torch's bool-mask sdpa)
    mean_rows: bool = False  # … gets the mean of the values (a float mask of dtype-min entries,
    #                          where a right-padded mask can empty a row: sliding windows)


def row_valid(rw, add_BK1Q: Node) -> Node:
    """1.0 where a query keeps at least one key, else 0.0: (Bm, 1, 1, Sq)."""
    best = rw.call(aten.amax.default, add_BK1Q, [1], True)
    return rw.call(aten._to_copy.default, rw.call(aten.gt.Scalar, best, MASKED_LOGIT / 2), dtype=val(add_BK1Q).dtype)


def additive_mask(rw, mask: Node | None, is_causal: bool, sq: int, sk: int,
                  dtype: torch.dtype = torch.float32, replaces: bool = False) -> MaskPlan | None:
    """The additive masks of one attention; None when there is nothing to mask. Every tensor
    is rank ≤ 4. With a bool mask (or a padding input), a fully masked query row can occur;
    torch's sdpa returns zeros there, so the plan asks for them (``zero_rows``). ``replaces``:
    the mask stands for a masked fill, which replaces the logits, so a row it empties is uniform
    in torch whatever it held: such a row gets the mean of the values (``mean_rows``)."""
    static = torch.ones(1, 1, sq, sk, dtype=torch.bool)
    if is_causal:
        static &= torch.ones(sq, sk, dtype=torch.bool).tril()
    pad = None
    if mask is not None:
        form = padding_form(rw.gm, mask)
        if form is None:
            boolean = val(mask).dtype == torch.bool
            return MaskPlan(_model_mask(rw, mask, static if is_causal else None, dtype), boolean,
                            mean_rows=replaces and not boolean)
        pad, keep = form
        static = static & keep
    parts = [] if bool(static.all()) else _static_heads(rw, static, dtype)
    if pad is None:
        return MaskPlan(parts, zero_rows=False) if parts else None
    # (B, Sk) ints → (B, Sk, 1, 1): 0 where p ≠ 0, MASKED_LOGIT where p = 0
    keep = rw.call(aten.clamp.default, rw.call(aten._to_copy.default, pad, dtype=dtype), 0.0, 1.0)
    add = rw.call(aten.mul.Tensor, rw.call(aten.sub.Tensor, keep, 1.0), -MASKED_LOGIT)
    pad_BK11 = rw.call(aten.reshape.default, add, [shape(pad)[0], shape(pad)[1], 1, 1])
    adds = [rw.call(aten.add.Tensor, pad_BK11, part) for part in parts] or [pad_BK11]
    boolean = val(mask).dtype == torch.bool
    # a right-padded mask keeping only key 0 empties every row whose static part masks key 0
    empties = not bool(static[..., 0].all())
    return MaskPlan(adds, zero_rows=boolean, mean_rows=empties and not boolean)


def _model_mask(rw, mask: Node, static: torch.Tensor | None, dtype: torch.dtype) -> list[Node]:
    """The model's own mask, converted: bool → (keep − 1)·1e4, float → clamped at −1e4."""
    if val(mask).dtype == torch.bool:
        keep = rw.call(aten._to_copy.default, mask, dtype=dtype)
        add = rw.call(aten.mul.Tensor, rw.call(aten.sub.Tensor, keep, 1.0), -MASKED_LOGIT)
    else:
        add = rw.call(aten.clamp.default, mask, MASKED_LOGIT)
        if val(mask).dtype != dtype:  # the logits' dtype (a bf16 model's float32 mask)
            add = rw.call(aten._to_copy.default, add, dtype=dtype)
    while len(shape(add)) < 4:
        add = rw.call(aten.unsqueeze.default, add, 0)
    add_BHKQ = rw.call(aten.permute.default, add, [0, 1, 3, 2])
    heads = [rw.call(aten.unsqueeze.default, rw.call(aten.select.int, add_BHKQ, 1, h), 2)
             for h in range(shape(add_BHKQ)[1])]
    if static is None:
        return heads
    causal = _static_heads(rw, static, dtype)[0]
    return [rw.call(aten.add.Tensor, h, causal) for h in heads]
