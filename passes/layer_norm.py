"""LayerNorm over the channel axis of a channels-first 4-D tensor, with torch's semantics.

    layer_norm(from(y_BC1S), [C], weight, bias, eps)
        → from(((y − mean₁(y)) · rsqrt(mean₁((y − mean₁(y))²) + eps)) · weight.view(C, 1, 1)
                + bias.view(C, 1, 1))

mean₁ is a mean over dim 1 with keepdim. The normalised part is the form coremltools'
``fuse_layernorm_or_instancenorm`` pass folds into one MIL ``layer_norm`` over axis 1;
the affine part (scale, then bias: torch's order, never Apple's bias-first variant) stays two
elementwise ops. The model's own eps is kept. The rule fires only where the norm's input is
already in a channels-first layout region (``layout`` runs first); a norm outside any region
is left alone, since converting it alone would add two layout conversions — unless its input
is converted already for another reader and its output is converted too (an embedding read by
the first norm and by the residual stream): then the norm runs on that conversion. The pass also
runs layout's propagation rules, so the ``from`` each rewritten norm emits moves on down the
graph (into the next linear's ``to``, a residual add, a token select) in the same fixpoint.
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import arg, aten, readers, shape
from ane_rewrite.rewrite.match import requires
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from ._layouts import emit_from, emit_to, from_operand, match_to
from ._propagation import PROPAGATION_RULES


@requires(from_operand, decline="input is not in a channels-first layout region")
def _match(node: Node, y: Node, r: int) -> MatchResult:
    normalized_shape = list(node.args[1])
    if len(normalized_shape) != 1:
        return MatchResult.fail(f"normalises over {len(normalized_shape)} axes; only the channel axis maps to dim 1")
    return MatchResult.ok(y=y, r=r, channels=shape(y)[1], weight=arg(node, 2, "weight"),
                          bias=arg(node, 3, "bias"), eps=arg(node, 4, "eps", 1e-5))


def emit_channel_norm(rw, y: Node, eps: float) -> Node:
    """(y − mean₁(y)) · rsqrt(mean₁((y − mean₁(y))²) + eps): the form the export fuses into one
    MIL ``layer_norm`` over axis 1 (``ane_rewrite.coreml.fusion``)."""
    mean = rw.call(aten.mean.dim, y, [1], True)
    centered = rw.call(aten.sub.Tensor, y, mean)
    var = rw.call(aten.mean.dim, rw.call(aten.mul.Tensor, centered, centered), [1], True)
    rstd = rw.call(aten.rsqrt.default, rw.call(aten.add.Tensor, var, eps))
    return rw.call(aten.mul.Tensor, rstd, centered)


def _rewrite(rw, node: Node, m: dict) -> Node:
    y, c = m["y"], m["channels"]
    out = emit_channel_norm(rw, y, m["eps"])
    if m["weight"] is not None:
        out = rw.call(aten.mul.Tensor, out, rw.call(aten.reshape.default, m["weight"], [c, 1, 1]))
    if m["bias"] is not None:
        out = rw.call(aten.add.Tensor, out, rw.call(aten.reshape.default, m["bias"], [c, 1, 1]))
    return emit_from(rw, out, m["r"])


channel_layer_norm = Rule("channel_layer_norm", (aten.layer_norm,), _match, _rewrite,
                          "layer_norm(from(y), [C]) → from(norm over dim 1 of y)")


def _conversion_of(x: Node, skip: Node | None = None) -> int | None:
    """The rank of a ``to(x)`` among x's readers (a conversion is one to three nodes deep), else None."""
    for first in readers(x):
        if first is skip:
            continue
        for end in (first, *readers(first)):
            found = match_to(end)
            if found is not None and found[0] is x:
                return found[1]
    return None


def _converted_input(node: Node):
    """A channels-last x whose channels-first form exists already (``to(x)``, for another
    reader) while the norm's own output is converted too → (x, r), else None."""
    x = node.args[0]
    if not isinstance(x, Node) or from_operand(node) is not None:
        return None
    r = _conversion_of(x, skip=node)
    if r is None or _conversion_of(node) is None:
        return None
    return x, r


@requires(_converted_input)
def _match_converted(node: Node, x: Node, r: int) -> MatchResult:
    if list(node.args[1]) != [shape(x)[-1]]:
        return MatchResult.skip()
    return MatchResult.ok(r=r, channels=shape(x)[-1], weight=arg(node, 2, "weight"),
                          bias=arg(node, 3, "bias"), eps=arg(node, 4, "eps", 1e-5))


def _rewrite_converted(rw, node: Node, m: dict) -> Node:
    return _rewrite(rw, node, dict(m, y=emit_to(rw, node.args[0])))


converted_layer_norm = Rule(
    "converted_layer_norm", (aten.layer_norm,), _match_converted, _rewrite_converted,
    "layer_norm(x, [C]) → from(norm over dim 1 of to(x)) when to(x) exists for another reader and the norm's "
    "output is converted too: one conversion shared instead of two")

layer_norm = Pass("layer_norm", [channel_layer_norm, converted_layer_norm, *PROPAGATION_RULES], __doc__)
