"""GroupNorm at rank 4: each group normalised by one layer norm over its channels and positions.

    group_norm(x, G, w, b, eps)       x: (B, C), (B, C, L) or (B, C, H, W), C = G·c, N = L or H·W (1 for (B, C))
        → reshape(layer_norm(reshape(x, [B, G, c, N]), [c, N], eps), shape(x)) · w.view(C, 1, …) + b.view(C, 1, …)

A group's mean and variance are over its c channels and every position, which is what a layer
norm over the last two axes of (B, G, c, N) computes (the biased variance, as GroupNorm's); the
affine weight and bias are per channel, applied after the reshape back.

Declined, with the reason: a group or a group's positions over the ANE's 16384 per axis
(``hardware.MAX_DIM``), where the rank-4 view would leave the ANE anyway.

Why: coremltools converts ``group_norm`` through a (B, G, c, H, W) rank-5 tensor and a
reduce_mean/variance chain that squares activations in fp16 (docs/ane.md#placement-rules: rank 5
runs slower; docs/ane.md#modern-decoders on x² in fp16); one layer_norm on a rank-4 view is one
op that normalises without forming x² (diffusion UNets and their VAEs hold dozens of GroupNorms).
"""
from __future__ import annotations

import math

from torch.fx import Node

from ane_rewrite.hardware import MAX_DIM
from ane_rewrite.rewrite.graph import arg, aten, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule


def _match(node: Node) -> MatchResult:
    x, groups = node.args[:2]
    s = shape(x)
    if s is None or len(s) not in (2, 3, 4) or not isinstance(groups, int) or groups < 1 or s[1] % groups:
        return MatchResult.skip()
    c, n = s[1] // groups, math.prod(s[2:])
    if max(c, n) > MAX_DIM:
        return MatchResult.fail(f"a group of {c} channels × {n} positions: an axis over {MAX_DIM} in the rank-4 view")
    return MatchResult.ok(x=x, groups=groups, weight=arg(node, 2, "weight"), bias=arg(node, 3, "bias"),
                          eps=float(arg(node, 4, "eps", 1e-5)))


def _rewrite(rw, node: Node, m: dict) -> Node:
    s = list(shape(m["x"]))
    c, n = s[1] // m["groups"], math.prod(s[2:])
    grouped = rw.call(aten.reshape.default, m["x"], [s[0], m["groups"], c, n])
    y = rw.call(aten.reshape.default, rw.call(aten.layer_norm.default, grouped, [c, n], None, None, m["eps"]), s)
    per_channel = [s[1]] + [1] * (len(s) - 2)
    if m["weight"] is not None:
        y = rw.call(aten.mul.Tensor, y, rw.call(aten.reshape.default, m["weight"], per_channel))
    if m["bias"] is not None:
        y = rw.call(aten.add.Tensor, y, rw.call(aten.reshape.default, m["bias"], per_channel))
    return y


group_norm_rank4 = Rule("group_norm_rank4", (aten.group_norm,), _match, _rewrite,
                        "group_norm(x, G) → layer_norm over the last two axes of reshape(x, [B, G, c, N])")

group_norm = Pass("group_norm", [group_norm_rank4], __doc__)
