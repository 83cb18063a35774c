"""The ATen form every graph the passes see is in: core ATen but the ops kept whole (linear,
conv, layer_norm, softmax, attention, einsum, gelu, embedding, roll, unfold and fold as
``im2col`` / ``col2im``, …), and reshapes, never views. A captured model (``capture.py``) and
a saved ``.pt2`` program (``saved_program.py``) are both brought to it."""
from __future__ import annotations

import torch
from torch.fx import GraphModule

aten = torch.ops.aten

KEPT_OPS = (
    aten.linear.default, aten.conv2d.default, aten.layer_norm.default, aten.softmax.int,
    aten._softmax.default, aten.scaled_dot_product_attention.default, aten.einsum.default,
    aten.gelu.default, aten.embedding.default, aten.silu.default, aten.hardswish.default,
    aten.hardsigmoid.default, aten.group_norm.default, aten.matmul.default, aten.roll.default,
    aten.im2col.default, aten.col2im.default,
)


def decomposition_table() -> dict:
    table = torch.export.default_decompositions()
    for op in KEPT_OPS:
        table.pop(op, None)
    return table


def views_as_reshapes(gm: GraphModule) -> None:
    """Every ``view`` becomes a ``reshape``: the same values, and no dependence on strides.

    A captured ``view`` is valid for the strides its input had when it was traced (a fused
    kernel's output laid out so that a later transpose is contiguous, say). The passes replace
    values by others computed with other strides; in a graph of value semantics — which the
    rewritten graph is, and what coremltools converts — a reshape says what the view meant.
    The pipeline's lint keeps it so: no pass may add a ``view``."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is aten.view.default:
            node.target = aten.reshape.default
    gm.recompile()
