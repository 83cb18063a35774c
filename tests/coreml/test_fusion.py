"""ane_rewrite/coreml/fusion.py: the MIL pass that fuses the channel norm, and only it."""
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil


class Norm(nn.Module):
    def __init__(self, eps, extra_use=False):
        super().__init__()
        self.eps, self.extra_use = eps, extra_use

    def forward(self, y):
        mean = y.mean(1, keepdim=True)
        d = y - mean
        out = torch.rsqrt((d * d).mean(1, keepdim=True) + self.eps) * d
        return out + d if self.extra_use else out + y   # a residual add right after the norm


def _mix(module):
    return mil.op_mix(mil.program_ops(ane_rewrite.export(module.eval(), (torch.randn(1, 16, 1, 8),))))


def test_norm_followed_by_a_residual_add_is_one_layer_norm():
    mix = _mix(Norm(1e-5))
    assert mix["layer_norm"] == 1 and mix["reduce_mean"] == 0 and mix["add"] == 1


def test_a_centered_value_used_elsewhere_is_not_fused():
    mix = _mix(Norm(1e-5, extra_use=True))
    assert mix["layer_norm"] == 0 and mix["reduce_mean"] == 2
