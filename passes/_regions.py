"""Regions a rewrite does not pay in, kept in their original form.

An attention the attention pass declines stays batched on the tokens' channels-last layout;
its projections converted to convs alone would only add layout copies around it (DeBERTa-v2's
disentangled attention: 12 → 18 transposes, estimated 0.8× as fast). ``unlowered_regions``
finds, in the graph as captured (the snapshot safe mode holds, node for node the graph the
passes ran on), the projections of every declined attention — the linears its product's
operands come from, and those its output feeds — so that a second run of the pipeline keeps
them as linears (``node.meta["ane_keep"]``: layout declines them with that reason). The rest
of the model (feed-forward blocks, norms) is still rewritten. An attention left batched
because its per-head form would not pay (a decline of kind ``COST``, ``_attention_cost``)
keeps its converted projections when ``batched_heads`` reads its heads as they lie (no copy of
its own); when that pass declines it too, it is kept as captured like any declined attention.
An attention the attention pass cannot split per head at all but whose value product
``batched_heads`` reads as it lies (cross-covariance attention on channel-major heads,
``_channel_heads``; a query shared by every window, GCViT's) keeps its converted projections too.
"""
from __future__ import annotations

from torch.fx import Graph, GraphModule, Node

from ane_rewrite.rewrite.graph import aten, is_op
from ane_rewrite.rewrite.rules import COST

KEEP = "ane_keep"
ATTENTION_RULES = ("eager_to_sdpa", "eager_logit_steps", "sdpa_per_head")
READ = "ane_read_attention"  # on a value product batched_heads emitted: the attention it read (its anchor's name)
MAX_WALK = 200


def _linears(node: Node, upward: bool) -> list[Node]:
    """The first linears reached from node walking up its inputs (its operands' projections)
    or down its users (the output projection; the walk stops at a residual add or a norm)."""
    step = (lambda n: n.all_input_nodes) if upward else (lambda n: list(n.users))
    found, seen, stack = [], set(), step(node)
    while stack and len(seen) < MAX_WALK:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if is_op(n, aten.linear):
            found.append(n)  # a projection: the walk stops at it
        elif n.op == "call_function" and (upward or not is_op(n, aten.add, aten.layer_norm)):
            stack.extend(step(n))
    return found


def declined_attentions(report, rewritten: Graph | None = None) -> dict[str, str]:
    """{anchor node name: reasons} of the attentions the attention pass declined — less those left
    batched because lowering them would not pay, which keep their converted projections when
    ``batched_heads`` read their heads as they lie (their anchor is gone from ``rewritten``, the
    graph after the pipeline), and those whose value product ``batched_heads`` read as they lie
    (marked ``READ``: channel-major heads, or a query shared by every window). One that pass declined or left as it was is kept as captured, as a
    declined attention is: its converted projections would only add copies around it."""
    reasons: dict[str, list[str]] = {}
    paid = set()  # declined because they would not pay
    unread: dict[str, str] = {}  # … and batched_heads did not read their heads either
    for r in report.results:
        if r.name == "attention":
            for d in r.declined:
                if d.rule in ATTENTION_RULES:
                    reasons.setdefault(d.node, []).append(d.reason)
                    if d.kind == COST:
                        paid.add(d.node)
        elif r.name == "batched_heads":
            for d in r.declined:
                unread.setdefault(d.node, d.reason)
    nodes = list(rewritten.nodes) if rewritten is not None else []
    left = {n.name for n in nodes}
    read = {n.meta[READ] for n in nodes if READ in n.meta}
    for node in paid - set(unread):
        if node in left:
            unread[node] = "no rule reads its heads"
    return {node: "; ".join(why + ([f"left batched, its heads not read as they lie: {unread[node]}"]
                                   if node in unread else []))
            for node, why in reasons.items() if node not in read and (node not in paid or node in unread)}


def unlowered_regions(captured: Graph, declined: dict[str, str]) -> dict[str, str]:
    """{linear node name: why it is kept} for the projections of each declined attention
    (``declined_attentions``), found in the captured graph (read only)."""
    nodes = {n.name: n for n in captured.nodes}
    keep: dict[str, str] = {}
    for name, reason in declined.items():
        anchor = nodes.get(name)
        if anchor is None:
            continue
        why = (f"kept as a linear: attention {name} is not lowered ({reason}); converting its projections "
               "alone only adds layout copies around it")
        for linear in _linears(anchor, upward=True) + _linears(anchor, upward=False):
            keep.setdefault(linear.name, why)
    return keep


def mark_kept(gm: GraphModule, keep: dict[str, str]) -> None:
    for n in gm.graph.nodes:
        if n.name in keep:
            n.meta[KEEP] = keep[n.name]


def merge_reasons(first, second) -> None:
    """The second run's report, in place, with the first run's reasons: a candidate declined in
    the full attempt keeps the reason it was declined for (the second run, with projections
    kept, would only say they are not head splits); reasons new in the second run are added."""
    earlier = {r.name: {(d.rule, d.node): d for d in r.declined} for r in first.results}
    for r in second.results:
        merged = dict(earlier.get(r.name, {}))
        for d in r.declined:
            merged.setdefault((d.rule, d.node), d)
        r.declined = list(merged.values())
