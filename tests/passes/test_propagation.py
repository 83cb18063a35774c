"""passes/_propagation.py: the channels-first layout spreads past the ops between projections.

    to ─ conv ─ from ─ gelu ─ to ─ conv ─ from ─ (+x)   →   to ─ conv ─ gelu ─ conv ─ (+to(x)) ─ from
"""
import torch
from torch import nn

from ane_rewrite.passes._propagation import PROPAGATION_RULES
from ane_rewrite.passes.layout import addmm_to_conv, linear_to_conv
from ane_rewrite.rewrite.rules import Pass
from tests.helpers import captured, count, outputs
from tests.zoo import mlp_block

CONVERT_ONLY = Pass("convert", [linear_to_conv, addmm_to_conv])
PROPAGATE = Pass("propagate", PROPAGATION_RULES)


def test_conversions_between_projections_cancel_and_numbers_hold():
    module, example = mlp_block()
    gm = captured(module, example)
    CONVERT_ONLY(gm)
    assert count(gm, "permute") == 8  # a to and a from around each of the four convs
    result = PROPAGATE(gm)
    assert result.counts["sink_unary"] == 2 and result.counts["sink_binary"] >= 2
    assert count(gm, "permute") == 2  # one region: a conversion at each end
    torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not PROPAGATE(gm).changed


def test_an_operand_of_higher_rank_is_declined_with_its_reason():
    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x_BSC, t):
            return self.fc(x_BSC) + t  # t is (2, 2, 5, 8): the sum has rank 4

    module, example = Broadcast().eval(), (torch.randn(2, 5, 8), torch.randn(2, 2, 5, 8))
    gm = captured(module, example)
    CONVERT_ONLY(gm)
    result = PROPAGATE(gm)
    assert "the other operand has rank 4 > 3" in [d.reason for d in result.declined]
    torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
