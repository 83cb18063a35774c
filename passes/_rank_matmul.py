"""A matmul of rank ≥ 5 → the same matmul on rank-≤4 views of its operands (``windows``' rule, beside
``_rank_views``' for the other ops).

Glossary: A the batch axes of the product (all but the last two), M × K and K × N the matrices.

    matmul(a_A…MK, b_A…KN)  → reshape(matmul(view(a, [runs of A…, M, K]), view(b, [runs of A…, K, N])),
                                      the matmul's shape)

A run is adjacent batch axes that both operands hold alike — both whole, or both broadcast — so a
view merges them and the product is unchanged (``_rank_views._groups``); the matrices' axes are
never merged. VOLO's outlook attention weighs each position's k² window values by a k² × k² map,
(B, H, N, k², k²) @ (B, H, N, k², d): one run, (B·H·N, k², k²) @ (B·H·N, k², d), rank 3. The views
meet the reshapes around them and fold (``fold_view_chain``). Operands whose batch axes broadcast
in more runs than a rank-4 view holds are declined with the runs.
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.hardware import NATIVE_RANK
from ane_rewrite.rewrite.graph import aten, shape
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._rank_views import _groups, _high, _operand_view, _view


def _match(node: Node) -> MatchResult:
    a, b = node.args[:2]
    if not _high(node) or len(shape(a)) < 2 or len(shape(b)) < 2:
        return MatchResult.skip()
    batch = tuple(shape(node)[:-2])
    runs = _groups(batch, [tuple(shape(a)[:-2]), tuple(shape(b)[:-2])])
    if len(runs) + 2 > NATIVE_RANK:
        return MatchResult.fail(f"{node.name} {shape(a)} @ {shape(b)}: its operands broadcast over {len(runs)} runs "
                                "of batch axes, no rank-≤4 view holds them")
    views = [_operand_view(tuple(shape(t)[:-2]), batch, runs) + list(shape(t)[-2:]) for t in (a, b)]
    return MatchResult.ok(a=a, b=b, views=views)


def _rewrite(rw, node: Node, m: dict) -> Node:
    a, b = (_view(rw, t, view) for t, view in zip((m["a"], m["b"]), m["views"]))
    return rw.call(aten.reshape.default, rw.call(node.target, a, b), list(shape(node)))


low_rank_matmul = Rule("low_rank_matmul", (aten.matmul,), _match, _rewrite,
                       "matmul at rank ≥ 5 → on views merging the batch axes its operands hold alike")
