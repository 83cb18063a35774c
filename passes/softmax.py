"""Softmax chunking: split a head's attention along the query axis when its logits are large.

Glossary: B batch, K keys, Q queries, d head size.

    einsum('bkhq,bchk->bchq', softmax(einsum('bchq,bkhc->bkhq', q_Bd1Q, k_BK1d) [+ mask_BK1Q], 1), v_Bd1K)
        → cat([same on q[..., i:j] (and mask[..., i:j]) for each chunk i:j of Q], dim=3)

The softmax runs over keys (dim 1), so query chunks are independent and the result is exact.
A chunk holds at most ``max_queries`` queries and at most ``max_chunk_bytes`` of fp16 logits
(B · K · queries · 2 bytes); its size is rounded down to a multiple of 32 queries (64-byte aligned
last axis in fp16), at least 32. The last chunk takes the remainder (never dropped). Defaults:
512 queries, 1 MiB — a chunk's logits and softmax output together fit in half of the ~4 MiB
on-chip cache reported for M1 (``hardware.ON_CHIP_CACHE_MIB``, a prior to calibrate).
"""
from __future__ import annotations

import operator

from torch.fx import Node

from ane_rewrite.hardware import ALIGNED_LAST_AXIS, COMPUTE_BYTES
from ane_rewrite.rewrite.graph import aten, is_op, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule



def chunk_size(batch: int, keys: int, queries: int, max_queries: int, max_chunk_bytes: int) -> int:
    """Queries per chunk (≥ queries means one chunk: nothing to split)."""
    by_bytes = max_chunk_bytes // max(1, batch * keys * COMPUTE_BYTES)
    size = min(max_queries, by_bytes)
    return max(ALIGNED_LAST_AXIS, size // ALIGNED_LAST_AXIS * ALIGNED_LAST_AXIS) if size < queries else queries


def _is_einsum(node, equation: str) -> bool:
    return is_op(node, aten.einsum) and node.args[0] == equation


def make_softmax_pass(max_queries: int = 512, max_chunk_bytes: int = 1 << 20) -> Pass:
    if max_queries < 1 or max_chunk_bytes < 1:
        raise ValueError("max_queries and max_chunk_bytes must be positive")

    def match(node: Node) -> MatchResult:
        if not _is_einsum(node, "bkhq,bchk->bchq"):
            return MatchResult.skip()
        weights, v = node.args[1]
        if not (is_op(weights, aten._softmax, aten.softmax) and weights.args[1] == 1 and len(weights.users) == 1):
            return MatchResult.skip()
        logits, mask = weights.args[0], None
        if is_op(logits, aten.add.Tensor) and len(logits.users) == 1 and _is_einsum(logits.args[0], "bchq,bkhc->bkhq"):
            logits, mask = logits.args[0], logits.args[1]
        if not _is_einsum(logits, "bchq,bkhc->bkhq") or len(logits.users) != 1:
            return MatchResult.skip()
        q, k = logits.args[1]
        batch, keys, _, queries = shape(logits)
        size = chunk_size(batch, keys, queries, max_queries, max_chunk_bytes)
        if size >= queries:
            return MatchResult.skip()
        return MatchResult.ok(q=q, k=k, v=v, mask=mask, size=size)

    def rewrite(rw, node: Node, m: dict) -> Node:
        queries, size = shape(m["q"])[3], m["size"]
        sizes = [min(size, queries - start) for start in range(0, queries, size)]
        q_chunks = rw.call(aten.split_with_sizes.default, m["q"], sizes, 3)
        mask = m["mask"]
        per_query_mask = mask is not None and shape(mask)[3] == queries
        mask_chunks = rw.call(aten.split_with_sizes.default, mask, sizes, 3) if per_query_mask else None
        outs = []
        for i in range(len(sizes)):
            q_c = rw.call(operator.getitem, q_chunks, i)
            logits = rw.call(aten.einsum.default, "bchq,bkhc->bkhq", [q_c, m["k"]])
            if mask is not None:
                logits = rw.call(aten.add.Tensor, logits,
                                 rw.call(operator.getitem, mask_chunks, i) if per_query_mask else mask)
            weights = rw.call(aten._softmax.default, logits, 1, False)
            outs.append(rw.call(aten.einsum.default, "bkhq,bchk->bchq", [weights, m["v"]]))
        return rw.call(aten.cat.default, outs, 3)

    rule = Rule("chunk_queries", (aten.einsum,), match, rewrite,
                "per-head attention → the same per query chunk, concatenated on Q")
    return Pass("softmax", [rule], __doc__)


softmax = make_softmax_pass()
