"""Logit terms computed from the queries or keys through a relative-position gather
(disentangled attention: DeBERTa's content-to-position and position-to-content terms), per
head and without a gather.

    t = gather(matmul(x, y), -1, idx)            [its last two axes transposed]
        x: heads of a channels-first tensor (queries or keys), rows i < I
        y: a static table (B·H | H, d, P): position embeddings through a projection, transposed
        idx: static (I, J), idx[i, j] = f(i − j) for one f (a relative offset, bucketed or not)
    t[i, j] = x_i · y[:, f(i − j)]

    → per head: y' = y[:, f(I − 1 − c)] for c < E = I + J − 1 (static: folded at export)
                r[i, c] = x_i · y'[:, c]                      one einsum, (B, I, 1, E)
                t[i, j] = r.flat[(I − 1) + i·(E − 1) + j]      the skew: reshape, slice, reshape, slice

Row i of r holds the offsets i − j in decreasing order, so moving one row down shifts the
window by one: the skew is a reshape of the flat rows, no index left. When the rows are the keys
(t transposed, as position-to-content is) the result is already a head's (B, K, 1, Q) logits;
when they are the queries, the heads' (B, Q, K) terms are stacked and transposed once for all.

A term is a tree of such gathers under sums, scalar factors (DeBERTa's 1/√(3d)), transposes of
the last two axes and regrouping views; anything else computed from q or k is declined with the
node it stopped at.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.fx import Node

from ane_rewrite.rewrite.graph import VIEWS, aten, depends_on, is_op, is_static, shape, static_value

from ._eager_attention import _scalar
from ._heads import Heads, head_channels
from ._per_head import batch_first

SUMS = (aten.add.Tensor, aten.sub.Tensor)
FACTORS = (aten.mul.Tensor, aten.div.Tensor)


@dataclass(frozen=True)
class RelativeGather:
    x: Heads          # the content heads: the rows i
    table: Node       # y as the product reads it: (…, d, P), static
    rows: tuple       # y's column for each c < I + J − 1
    sizes: tuple      # (I, J)
    factor: float = 1.0  # a scale of x before the product


def _transposes_last_two(node: Node) -> bool:
    r = len(shape(node) or ())
    if is_op(node, aten.permute):
        return list(node.args[1]) == [*range(r - 2), r - 1, r - 2]
    return is_op(node, aten.transpose) and sorted(d % r for d in node.args[1:3]) == [r - 2, r - 1]


def _scalar_operand(a) -> bool:
    return isinstance(a, (int, float)) or (isinstance(a, Node) and is_static(a) and math.prod(shape(a) or ()) == 1)


def _offsets(idx: torch.Tensor):
    """idx (…, I, J) equal over its leading axes with idx[i, j] = f(i − j) → f at the offsets
    I − 1, I − 2, …, −(J − 1) (the order the skew reads), else None."""
    i_len, j_len = idx.shape[-2:]
    flat = idx.reshape(-1, i_len, j_len)
    if not bool((flat == flat[0]).all()):
        return None
    idx = flat[0]
    delta = torch.arange(i_len).view(-1, 1) - torch.arange(j_len).view(1, -1)
    f = torch.zeros(i_len + j_len - 1, dtype=idx.dtype)
    f[delta + j_len - 1] = idx
    if not torch.equal(f[delta + j_len - 1], idx):
        return None
    return f.flip(0)


def relative_gather(node: Node, split) -> RelativeGather | str:
    """node = gather(matmul(x, y), -1, idx) as the module docstring says → its parts, else the
    reason it is not."""
    expected = (f"{node.name} is not gather(matmul(x, y), -1, idx) with x heads of a channels-first "
                "tensor, y static and idx[i, j] a static function of i − j")
    if not (is_op(node, aten.gather) and node.args[1] in (-1, len(shape(node)) - 1)):
        return expected
    product, index = node.args[0], node.args[2]
    if not is_op(product, aten.bmm, aten.matmul):
        return expected
    x, y = product.args[:2]
    factor = 1.0
    peeled = _scalar(x)  # queries scaled before the product (DeBERTa v1)
    if peeled is not None:
        x, factor = peeled
    r = len(shape(x))
    if r not in (3, 4) or len(shape(y)) != r or not is_static(y):
        return expected
    if r == 3:
        if split is None:
            return expected
        b, h = split
        heads = head_channels(x, tail=lambda t: t.reshape(b, h, *t.shape[1:]))
    else:
        b, h = shape(x)[:2]
        heads = head_channels(x)
    if heads is None or len(heads.bases) != h:
        return f"{expected}: x is not a head split"
    lead = shape(y)[:-2]
    if math.prod(lead) not in (h, b * h):
        return f"{expected}: the table {y.name} is not one per head"
    if math.prod(lead) != h:
        value = static_value(y)
        per_batch = None if value is None else value.reshape(b, h, *value.shape[-2:])
        if per_batch is None or not bool((per_batch == per_batch[:1]).all()):
            return f"{expected}: the table {y.name} may differ between batch elements"
    while is_op(index, aten.expand):
        index = index.args[0]
    value = static_value(index)
    sizes = tuple(shape(node)[-2:])
    if value is None or tuple(value.shape[-2:]) != sizes:
        return f"{expected}: its index {index.name} is not static"
    rows = _offsets(value)
    if rows is None:
        return f"{expected}: its index {index.name} is not a function of i − j"
    if int(rows.min()) < 0 or int(rows.max()) >= shape(y)[-1]:
        return f"{expected}: its index {index.name} reads outside the table"
    return RelativeGather(heads, y, tuple(int(v) for v in rows), sizes, factor)


def content_term(term: Node, split, sources: set, q_len: int, k_len: int, flipped: bool = False) -> str | None:
    """None when ``term`` (laid out as the logits (…, Q, K), or (…, K, Q) when ``flipped``)
    can be emitted per head by ``ContentTerms``; else the reason naming the node."""
    if not depends_on(term, sources):
        return f"{term.name}: a term without q or k inside a term computed from them"
    if _transposes_last_two(term):
        return content_term(term.args[0], split, sources, q_len, k_len, not flipped)
    if is_op(term, *VIEWS) and shape(term)[-2:] == shape(term.args[0])[-2:]:
        return content_term(term.args[0], split, sources, q_len, k_len, flipped)
    if is_op(term, *SUMS, *FACTORS) and len(term.args) == 2 and not term.kwargs:
        if is_op(term, *FACTORS):
            scalars = [_scalar_operand(a) for a in term.args]
            if not (scalars[1] or (scalars[0] and is_op(term, aten.mul.Tensor))):
                return f"{term.name}: a product of two logit terms (expected a term times a scalar)"
        for a in term.args:
            if isinstance(a, Node) and not _scalar_operand(a):
                reason = content_term(a, split, sources, q_len, k_len, flipped)
                if reason:
                    return reason
        return None
    found = relative_gather(term, split)
    if isinstance(found, str):
        return found
    if found.sizes != ((k_len, q_len) if flipped else (q_len, k_len)):
        return f"{term.name}: its rows are neither the queries nor the keys"
    return None


class ContentTerms:
    """Emits a checked content term (``content_term``) for one head as (B, K, 1, Q) logits;
    what every head shares (a transposed source, the stacked query-row terms) is emitted once."""

    def __init__(self, split):
        self.split = split
        self.cache: dict = {}

    def per_head(self, rw, term: Node, h: int, flipped: bool = False):
        if _transposes_last_two(term):
            return self.per_head(rw, term.args[0], h, not flipped)
        if is_op(term, *VIEWS):
            return self.per_head(rw, term.args[0], h, flipped)
        if is_op(term, *SUMS, *FACTORS):
            args = [self.per_head(rw, a, h, flipped) if isinstance(a, Node) and not _scalar_operand(a) else a
                    for a in term.args]
            return rw.call(term.target, *args)
        if is_op(term, aten.gather):
            return self._gather(rw, term, h, flipped)
        raise AssertionError(f"{term.name} was not checked by content_term")  # pragma: no cover

    def _gather(self, rw, node: Node, h: int, flipped: bool) -> Node:
        if flipped:  # the rows are the keys: (B, K, 1, Q) as it is
            return rw.call(aten.unsqueeze.default, self._skewed(rw, node, h), 2)
        key = ("stacked", node)
        if key not in self.cache:  # the rows are the queries: every head's (B, Q, K), transposed once
            found = relative_gather(node, self.split)
            heads = [rw.call(aten.unsqueeze.default, self._skewed(rw, node, g), 2) for g in range(len(found.x.bases))]
            self.cache[key] = rw.call(aten.permute.default, rw.call(aten.cat.default, heads, 2), [0, 3, 2, 1])
        return rw.call(aten.slice.Tensor, self.cache[key], 2, h, h + 1)

    def _skewed(self, rw, node: Node, h: int) -> Node:
        """Head h's term t[i, j] as (B, I, J)."""
        found = relative_gather(node, self.split)
        x, (i_len, j_len) = found.x, found.sizes
        e_len = i_len + j_len - 1
        key = ("transposed", x.source)
        if key not in self.cache:
            self.cache[key] = rw.call(aten.permute.default, batch_first(rw, x), [0, 3, 2, 1])
        x_BI1C = self.cache[key]
        batch = shape(x_BI1C)[0]
        x_h = rw.call(aten.slice.Tensor, x_BI1C, 3, x.bases[h], x.bases[h] + x.dim)
        table = found.table
        if len(shape(table)) == 4:
            table = rw.call(aten.select.int, table, 0, 0)
        table = rw.call(aten.select.int, table, 0, h)  # (d, P): head h of the first batch element
        rows = rw.constant("relative_rows", torch.tensor(found.rows, dtype=torch.long))
        y_d1E = rw.call(aten.reshape.default, rw.call(aten.index_select.default, table, 1, rows), [1, x.dim, 1, e_len])
        if batch != 1:
            y_d1E = rw.call(aten.expand.default, y_d1E, [batch, x.dim, 1, e_len])
        if found.factor != 1.0:
            y_d1E = rw.call(aten.mul.Tensor, y_d1E, found.factor)
        r_BI1E = rw.call(aten.einsum.default, "bchq,bkhc->bkhq", [y_d1E, x_h])
        if i_len == 1:
            return rw.call(aten.reshape.default, rw.call(aten.slice.Tensor, r_BI1E, 3, 0, j_len), [batch, 1, j_len])
        flat = rw.call(aten.reshape.default, r_BI1E, [batch, i_len * e_len])
        window = rw.call(aten.slice.Tensor, flat, 1, i_len - 1, i_len - 1 + i_len * (e_len - 1))
        rows_ = rw.call(aten.reshape.default, window, [batch, i_len, e_len - 1])
        return rw.call(aten.slice.Tensor, rows_, 2, 0, j_len)
