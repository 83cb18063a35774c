"""Joint attention's heads: streams concatenated on the token axis, read as one head split.

    cat([heads(y₁), heads(y₂), …], dim=2)        heads(yᵢ): (B, H, Sᵢ, d) head splits of channels-first
                                                  (B, C, 1, Sᵢ) projections, the same channels per head
        → permute(reshape(slice₁(cat₃([y₁, y₂, …]), b₀, b₀ + H·d), [B, H, d, ΣSᵢ]), [0, 1, 3, 2])

    the same for (B, Sᵢ, H, d) parts joined on dim 1 (Flux joins its streams before the
    transpose to heads-first), permuted [0, 3, 1, 2] instead

SD3's and Flux's joint attention projects the image tokens and the text tokens with weights of
their own, splits both into the same heads and attends over their concatenation. Concatenating
the channels-first projections on their token axis first makes q, k and v head splits of one
(B, C, 1, S) tensor again, which the rotary and attention passes lower as they do any other.

Declined, with the reason: streams whose heads differ (count, size or channels), or whose heads
are not contiguous on the channel axis (a fused projection interleaving q, k and v per head).

Why: the same per-head form as any attention (docs/ane.md#principles, 2 and 3); left as it is,
the streams' projections stay channels-last around it (more layout copies than the model as is).
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, normalize_dim, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._heads import head_channels


def _sequence_first(t):
    """A (B, S, H, d) index read as (B, H, S, d)."""
    return t.transpose(1, 2)


def _match(node: Node) -> MatchResult:
    parts, out = node.args[0], shape(node)
    if out is None or len(out) != 4 or not isinstance(parts, (list, tuple)) or len(parts) < 2:
        return MatchResult.skip()
    dim = normalize_dim(arg(node, 1, "dim", 0), 4)
    if dim not in (1, 2):  # the token axis of (B, S, H, d) parts, or of (B, H, S, d) ones
        return MatchResult.skip()
    heads = [head_channels(p, _sequence_first if dim == 1 else None) for p in parts]
    if any(h is None or h.swapped or h.spatial for h in heads):
        return MatchResult.skip()  # not every stream is a head split of a (B, C, 1, S) projection
    first = heads[0]
    if any(h.bases != first.bases or h.dim != first.dim or shape(h.source)[:2] != shape(first.source)[:2]
           for h in heads):
        return MatchResult.fail("the streams' heads differ (count, size, channels or batch): not one head split")
    b0, d, n = first.bases[0], first.dim, len(first.bases)
    if first.bases != tuple(b0 + i * d for i in range(n)):
        return MatchResult.fail(f"the heads' channel offsets {first.bases[:4]}… are not contiguous")
    return MatchResult.ok(sources=[h.source for h in heads], b0=b0, dim=d, heads=n, tokens_first=dim == 1)


def _rewrite(rw, node: Node, m: dict) -> Node:
    y = rw.call(aten.cat.default, m["sources"], 3)
    batch, channels, _, tokens = shape(y)
    width = m["heads"] * m["dim"]
    if m["b0"] or width != channels:
        y = rw.call(aten.slice.Tensor, y, 1, m["b0"], m["b0"] + width)
    split = rw.call(aten.reshape.default, y, [batch, m["heads"], m["dim"], tokens])
    return rw.call(aten.permute.default, split, [0, 3, 1, 2] if m["tokens_first"] else [0, 1, 3, 2])


joint_heads_rule = Rule("joint_heads", (aten.cat,), _match, _rewrite,
                        "cat(heads(y₁), heads(y₂), dim=tokens) → heads(cat₃(y₁, y₂))")

joint_heads = Pass("joint_heads", [joint_heads_rule], __doc__)
