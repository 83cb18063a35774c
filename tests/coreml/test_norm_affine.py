"""ane_rewrite/coreml/norm_affine.py: the channel layer_norm takes the affine after it as γ, β."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil


class AffineNorm(nn.Module):
    def __init__(self, channels=16, second_reader=False):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        self.bias = nn.Parameter(torch.randn(channels))
        self.second_reader = second_reader

    def forward(self, y):
        d = y - y.mean(1, keepdim=True)
        normed = torch.rsqrt((d * d).mean(1, keepdim=True) + 1e-5) * d
        out = normed * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        return out + normed.exp() if self.second_reader else out + y


@pytest.mark.parametrize("second_reader", [False, True])
def test_the_affine_joins_the_norm_unless_the_norm_has_another_reader(tmp_path, second_reader):
    model = AffineNorm(second_reader=second_reader).eval()
    example = (torch.randn(1, 16, 1, 8),)
    path = tmp_path / "m.mlpackage"
    mix = mil.op_mix(mil.program_ops(ane_rewrite.export(model, example, path, progress=False)))
    assert mix["layer_norm"] == 1
    assert mix["batch_norm"] + mix["mul"] == (1 if second_reader else 0), mix
    report = ane_rewrite.verify(model, path, example, draws=3)
    assert report.ok and report.psnr >= 60, report
