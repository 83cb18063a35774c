"""passes/group_norm.py: GroupNorm as one layer norm over the last two axes of a rank-4 view.

    conv ─ group_norm ─ silu   →   conv ─ reshape [B, G, c, N] ─ layer_norm [c, N] ─ reshape ─ ·w + b ─ silu
"""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.hardware import MAX_DIM
from ane_rewrite.passes.group_norm import group_norm
from tests.helpers import captured, count, outputs


class ConvNorm(nn.Module):
    def __init__(self, c=24, groups=6, affine=True, dims=2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.conv = conv(c, c, 3, padding=1)
        self.norm = nn.GroupNorm(groups, c, eps=1e-6, affine=affine)
        if affine:
            nn.init.normal_(self.norm.weight)
            nn.init.normal_(self.norm.bias)

    def forward(self, x):
        return nn.functional.silu(self.norm(self.conv(x)))


@pytest.mark.parametrize("shape,groups,affine", [((2, 24, 5, 7), 6, True), ((1, 24, 9), 3, True),
                                                 ((2, 24, 4, 4), 24, False), ((1, 24, 3, 3), 1, True)])
def test_a_group_norm_becomes_a_rank_4_layer_norm_with_the_same_values(shape, groups, affine):
    module = ConvNorm(groups=groups, affine=affine, dims=len(shape) - 2).eval()
    example = (torch.randn(*shape) * 3 + 1,)
    gm = captured(module, example)
    result = group_norm(gm)
    assert result.counts == {"group_norm_rank4": 1}
    assert count(gm, "group_norm") == 0 and count(gm, "layer_norm") == 1
    torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not group_norm(gm).changed  # a second run changes nothing


def test_a_group_too_large_for_the_ane_is_declined_with_the_reason():
    module = nn.GroupNorm(1, 2).eval()
    gm = captured(module, (torch.randn(1, 2, MAX_DIM + 1),))
    result = group_norm(gm)
    assert not result.changed and count(gm, "group_norm") == 1
    (declined,) = result.declined
    assert str(MAX_DIM) in declined.reason and "rank-4 view" in declined.reason


def test_optimize_exports_a_group_norm_block_without_rank_5(tmp_path):
    module, example = ConvNorm().eval(), (torch.randn(1, 24, 8, 8),)
    fast = ane_rewrite.optimize(module, example)
    assert fast.ane_report.counts()["group_norm"] == {"group_norm_rank4": 1}
    base = mil.summary(mil.program_ops(ane_rewrite.export(module, example, tmp_path / "b.mlpackage", progress=False)))
    new_path = ane_rewrite.export(fast, example, tmp_path / "n.mlpackage", progress=False)
    new = mil.summary(mil.program_ops(new_path))
    assert base["max_rank"] == 5 and new["max_rank"] <= 4 and new["ops"] < base["ops"]
    report = ane_rewrite.verify(module, new_path, example)
    assert report.ok and report.psnr >= 60, report
