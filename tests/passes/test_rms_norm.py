"""passes/rms_norm.py: RMSNorm as a channel layer norm of cat([y, −y]), per head for QK-norm.

    x ─ pow₂ ─ mean₋₁ ─ +eps ─ rsqrt ─ · x ─ · w   →   to ─ cat(y, −y) ─ norm₁ ─ slice ─ · w ─ from
"""
import pytest
import torch
from torch import nn

from ane_rewrite.passes.rms_norm import rms_norm
from ane_rewrite.rewrite.graph import aten, is_op
from tests.helpers import captured, count, outputs


class Rms(nn.Module):
    def __init__(self, c, gemma=False, square="pow"):
        super().__init__()
        self.w, self.gemma, self.square = nn.Parameter(torch.randn(c)), gemma, square

    def forward(self, x):
        sq = x.pow(2) if self.square == "pow" else x * x
        normed = x * torch.rsqrt(sq.mean(-1, keepdim=True) + 1e-6)
        return normed * (1.0 + self.w) if self.gemma else self.w * normed


class QkNorm(nn.Module):
    def __init__(self, c=32, heads=4):
        super().__init__()
        self.proj, self.norm, self.heads = nn.Linear(c, c), Rms(c // heads), heads

    def forward(self, x_BSC):
        b, s, c = x_BSC.shape
        return self.norm(self.proj(x_BSC).view(b, s, self.heads, c // self.heads)).transpose(1, 2)


def _close(gm, module, example):
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gemma,square,shape", [(False, "pow", (2, 7, 24)), (True, "mul", (2, 7, 24)),
                                                (False, "pow", (3, 24)), (False, "pow", (1, 4, 5, 24))])
def test_channel_rms_norm_is_one_channel_norm(gemma, square, shape):
    module, example = Rms(shape[-1], gemma, square).eval(), (torch.randn(*shape) * 300,)  # |x| > 256
    gm = captured(module, example)
    result = rms_norm(gm)
    assert result.counts == {"rms_as_layer_norm": 1}
    assert count(gm, "pow") == 0 and count(gm, "cat") == 1 and count(gm, "neg") == 1
    means = [n for n in gm.graph.nodes if is_op(n, aten.mean)]
    assert len(means) == 2 and all(list(n.args[1]) == [1] for n in means)  # over the channels
    _close(gm, module, example)
    assert not rms_norm(gm).changed


def test_qk_norm_is_per_head_and_the_weight_is_on_the_channels():
    module, example = QkNorm().eval(), (torch.randn(2, 6, 32),)
    gm = captured(module, example)
    assert rms_norm(gm).counts == {"rms_as_layer_norm": 1}
    (cat,) = [n for n in gm.graph.nodes if is_op(n, aten.cat)]
    assert tuple(cat.meta["val"].shape) == (2 * 4, 2 * 8, 1, 6)  # (B·H, 2d, 1, S)
    _close(gm, module, example)


def test_a_mean_over_another_axis_is_no_rms_norm():
    class NotRms(nn.Module):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-6)

    gm = captured(NotRms().eval(), (torch.randn(2, 5, 8),))
    assert not rms_norm(gm).changed


def test_a_layer_norm_over_each_head_of_a_fused_projection_is_kept_per_head():
    class QkLayerNorm(nn.Module):  # Persimmon-like: fused qkv, q = qkv.view(B, S, H, 3, d)[..., 0, :]
        def __init__(self, c=32, heads=4):
            super().__init__()
            self.qkv, self.norm, self.heads = nn.Linear(c, 3 * c), nn.LayerNorm(c // heads), heads

        def forward(self, x_BSC):
            b, s, c = x_BSC.shape
            q = self.qkv(x_BSC).view(b, s, self.heads, 3, c // self.heads)[..., 0, :]
            return self.norm(q).transpose(1, 2)

    module, example = QkLayerNorm().eval(), (torch.randn(2, 6, 32),)
    with torch.no_grad():
        module.norm.weight.normal_(), module.norm.bias.normal_()
    gm = captured(module, example)
    assert rms_norm(gm).counts == {"head_layer_norm": 1}
    assert count(gm, "layer_norm") == 0
    _close(gm, module, example)


def test_a_layer_norm_over_channels_is_left_to_the_layer_norm_pass():
    module, example = nn.LayerNorm(16).eval(), (torch.randn(2, 5, 16),)
    assert not rms_norm(captured(module, example)).changed
