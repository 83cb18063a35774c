"""Channel-major heads: attention whose products run over each head's channels, not its tokens
(cross-covariance attention, XCiT's and EdgeNeXt's: softmax over a head's d × d channel
logits), read straight off the channels-first projections.

Glossary: B batch, C channels (H heads × d), S tokens. A channel-major head split is a
(B, H, d, S) tensor x with x[b, h, c, s] = y_BC1S[b, base_h + c, 0, s]: on the (B, C, 1, S)
layout that is a reshape (and a slice) of y — the heads as they lie — while the model reaches it
from its channels-last (B, S, C) form through permutes of rank 5 (qkv.reshape(B, S, 3, H, d)
.permute(2, 0, 3, 4, 1)), each a copy of the last axis once the projection is a convolution.

    x_BHdS = movement(y_BC1S)  (with a permute)       → reshape(slice(y_BC1S))     (channel_heads)
    matmul(w_BHXd, x_BHdS)     (the value product)    → matmul(w_BHXd, x_BHdS as they lie)
                                                                                   (channel_values)

Everything between the splits and the products (the L2 norm over the tokens, a per-head
temperature, the softmax over channels) stays as the model wrote it, on (B, H, d, ·) tensors;
the value product returns (B, H, d, S), the channels-first (B, C, 1, S) output as it lies, and
the model's head merge before its output projection cancels against the projection's conversion
(``cleanup``). ``channel_values`` marks the attention as read (``_regions``: its projections
stay convolutions). Heads at unequal steps of the channel axis are declined with the reason.
"""
from __future__ import annotations

import operator

from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, is_op, is_static, rank, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._regions import READ
from ._heads import MOVEMENT, Heads, head_channels, heads_as_they_lie, movement_chain, unread_as_they_lie

COPIES = (aten.permute, aten.transpose)
MAX_WALK = 400
PRODUCTS = ("batched_sdpa", "batched_logits", "batched_values", "channel_values")  # batched_heads' own products


def mark_read(rw, product: Node) -> None:
    """Mark ``product`` as the value product of the attention at ``rw``'s anchor, read as it lies
    (``_regions``), when nothing from its head splits to it copies the tokens: walking up from
    its operands through the attention's own steps and the splits' data movement, every permute
    of a tensor with the token axis is a swap of the last two axes that a matmul folds. A split's source (its projection, or
    whatever computed the tensor it reads) ends the walk, as a constant does."""
    tokens = shape(product)[-1]  # the product is (B, H, d, S): channels-first, the tokens last
    seen, stack = set(), [(n, False) for n in product.all_input_nodes]
    while stack:
        n, after_move = stack.pop()
        if n in seen or n.op != "call_function" or is_static(n) or is_op(n, aten.linear, aten.conv2d, aten.addmm):
            continue
        folded = _folded_swap(n)
        moves = not folded and _moves(n)
        if after_move and not moves and not folded:
            continue  # the source of a head split
        seen.add(n)
        if len(seen) > MAX_WALK or (is_op(n, *COPIES) and not folded and tokens in shape(n)):
            return  # a copy of the tokens (a swap of DaViT's d × d channel logits is none)
        stack.extend((i, moves or (after_move and folded)) for i in n.all_input_nodes)
    product.meta[READ] = rw.anchor.name


def _moves(n: Node) -> bool:
    return is_op(n, *MOVEMENT) or (n.op == "call_function" and n.target is operator.getitem
                                   and is_op(n.args[0], *MOVEMENT))


def _folded_swap(n: Node) -> bool:
    perm = list(n.args[1]) if is_op(n, aten.permute) else None
    swap = perm is not None and perm[-2:] == [len(perm) - 1, len(perm) - 2] and perm[:-2] == list(range(len(perm) - 2))
    return swap and all(is_op(u, aten.matmul) for u in n.users)


def _transposed(t):
    return t.transpose(-1, -2)


def channel_major(x: Node) -> Heads | None:
    """x (B, H, d, S) as channel-major heads of a channels-first source, else None."""
    return head_channels(x, tail=_transposed) if rank(x) == 4 else None


def _read(x: Node) -> MatchResult:
    """x's channel-major heads when a reshape and a slice read them as they lie."""
    h = channel_major(x)
    if h is None:
        return MatchResult.skip()
    if reason := unread_as_they_lie(h):
        return MatchResult.fail(reason)
    return MatchResult.ok(h=h)


def _split_end(node: Node) -> bool:
    """node ends a chain of data movement: it moves data and some user of it computes."""
    return _moves(node) and any(not is_op(u, *MOVEMENT) for u in node.users)


def _match_split(node: Node) -> MatchResult:
    if not _split_end(node) or rank(node) != 4:
        return MatchResult.skip()
    source, chain = movement_chain(node)
    if not any(is_op(n, *COPIES) or (rank(n) or 0) > 4 for n in chain):
        return MatchResult.skip()  # a reshape and a slice already: as they lie
    return _read(node)


def _rewrite_split(rw, node: Node, m: dict) -> Node:
    return heads_as_they_lie(rw, m["h"])


channel_heads = Rule("channel_heads", None, _match_split, _rewrite_split,
                     "x_BHdS = movement(y_BC1S) with a permute → reshape(slice(y_BC1S))")


def _match_values(node: Node) -> MatchResult:
    w, v = node.args[:2]
    if node.meta.get("ane_rule") in PRODUCTS or rank(w) != 4 or channel_major(w) is not None:
        return MatchResult.skip()
    return _read(v)


def _rewrite_values(rw, node: Node, m: dict) -> Node:
    out = rw.call(aten.matmul.default, node.args[0], heads_as_they_lie(rw, m["h"]))
    mark_read(rw, out)
    return out


channel_values = Rule("channel_values", (aten.matmul,), _match_values, _rewrite_values,
                      "matmul(w, x_BHdS) → matmul(w, x_BHdS as they lie)")
