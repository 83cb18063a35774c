"""passes/_broadcast_permute.py: a permute of elementwise ops over broadcast operands becomes
reshapes of the operands; a permute that swaps two full axes of an operand stays."""
import torch
from torch import nn

from ane_rewrite.passes import cleanup
from ane_rewrite.rewrite.graph import aten, is_op
from tests.helpers import captured, outputs


class OuterMask(nn.Module):
    """DeBERTa's mask: the outer product of a padding mask, cast, inverted, scaled, transposed."""

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, m, x):
        outer = m[:, None, :, None] * m[:, None, None, :]
        if self.full:
            outer = outer + x
        mask = (~outer.bool()).float() * -1e4
        return mask.clamp(min=-1e4).permute(0, 1, 3, 2) + 1.0


def _permutes(gm) -> int:
    return sum(is_op(n, aten.permute) for n in gm.graph.nodes)


def test_the_transpose_of_an_outer_product_mask_is_reshapes():
    m = (torch.rand(2, 9) > 0.3).float()
    example = (m, torch.randn(2, 1, 9, 9))
    gm = captured(OuterMask(), example)
    assert _permutes(gm) == 1
    result = cleanup(gm)
    assert result.counts["permute_into_broadcasts"] == 1 and _permutes(gm) == 0
    torch.testing.assert_close(outputs(gm, example), OuterMask()(*example))


def test_a_full_operand_keeps_the_permute():
    m = (torch.rand(2, 9) > 0.3).float()
    example = (m, torch.randn(2, 1, 9, 9))
    gm = captured(OuterMask(full=True), example)
    cleanup(gm)
    assert _permutes(gm) == 1
    torch.testing.assert_close(outputs(gm, example), OuterMask(full=True)(*example))
