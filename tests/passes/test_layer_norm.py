"""passes/layer_norm.py: LayerNorm over the channel axis of (B, C, 1, S).

    conv ─ from ─ layer_norm ─ to ─ conv   →   conv ─ mean₁/sub/mul/mean₁/rsqrt ─ ·w + b ─ conv
"""
import pytest
import torch
from torch import nn

from ane_rewrite import export
from ane_rewrite.coreml import mil
from ane_rewrite.passes.cleanup import cleanup
from ane_rewrite.passes.layer_norm import layer_norm
from ane_rewrite.passes.layout import layout
from tests.helpers import captured, count, outputs
from tests.zoo import randomize_norms


class PostNorm(nn.Module):
    """linear → (+x) → LayerNorm → linear: the norm sits inside a layout region."""

    def __init__(self, c=32, eps=1e-5, affine=True):
        super().__init__()
        self.a, self.b = nn.Linear(c, c), nn.Linear(c, c)
        self.norm = nn.LayerNorm(c, eps=eps, elementwise_affine=affine)

    def forward(self, x):
        return self.b(self.norm(x + self.a(x)))


def _rewrite(module, example):
    gm = captured(module, example)
    layout(gm)
    return gm, layer_norm(gm)


@pytest.mark.parametrize("eps", [1e-12, 1e-5])
@pytest.mark.parametrize("affine", [True, False])
def test_norm_in_region_runs_over_channels(eps, affine):
    module = randomize_norms(PostNorm(eps=eps, affine=affine).eval())
    example = (torch.randn(2, 6, 32),)
    gm, result = _rewrite(module, example)
    assert result.counts["channel_layer_norm"] == 1
    assert count(gm, "layer_norm") == 0
    assert count(gm, "permute") == 2  # only the region's boundaries
    means = [n for n in gm.graph.nodes if n.target == torch.ops.aten.mean.dim]
    assert [n.args[1] for n in means] == [[1], [1]]
    eps_adds = [n for n in gm.graph.nodes if n.target == torch.ops.aten.add.Tensor and n.args[1] == eps]
    assert len(eps_adds) == 1  # the model's own eps, kept
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not layer_norm(gm).changed


def test_norm_outside_any_region_is_declined_with_reason():
    module = nn.Sequential(nn.LayerNorm(16)).eval()
    gm = captured(module, (torch.randn(2, 3, 16),))
    layout(gm)
    result = layer_norm(gm)
    assert not result.changed and count(gm, "layer_norm") == 1
    (declined,) = result.declined
    assert "not in a channels-first layout region" in declined.reason


def test_norm_over_two_axes_is_declined_with_reason():
    class TwoAxes(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.norm = nn.LayerNorm([4, 8])

        def forward(self, x):
            return self.norm(self.a(x))

    module, example = TwoAxes().eval(), (torch.randn(2, 4, 8),)
    gm, result = _rewrite(module, example)
    assert not result.counts["channel_layer_norm"]
    assert any("2 axes" in d.reason for d in result.declined)
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trained", [True, False], ids=["trained affine", "identity affine"])
def test_the_exported_channel_norm_is_one_layer_norm_op(trained):
    """An identity affine (fresh init) is the case coremltools' own fusion refuses: the
    export's extra MIL pass (ane_rewrite/coreml/fusion.py) fuses it too."""
    module = PostNorm(c=64, eps=1e-5).eval()
    if trained:
        randomize_norms(module)
    example = (torch.randn(1, 16, 64),)
    gm, _ = _rewrite(module, example)
    mix = mil.op_mix(mil.program_ops(export(gm, example)))
    assert mix["layer_norm"] == 1
    assert mix["reduce_mean"] == 0 and mix["rsqrt"] == 0
    assert mix["conv"] == 2 and mix["linear"] == 0


class ParallelBlock(nn.Module):
    """x + attn-like(norm1(x)) + mlp(norm2(x)) (GPT-NeoX, GPT-J): x is read by two norms and the
    residual, so its channels-first form exists already; the norms run on it."""

    def __init__(self, c=32):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.a, self.b = nn.Linear(c, c), nn.Linear(c, c)

    def forward(self, x):
        x = x * 2.0  # a node of the model before the block (an embedding, say)
        return x + self.a(self.n1(x)) + torch.relu(self.b(self.n2(x)))


def test_a_norm_of_a_converted_input_runs_on_that_conversion():
    module = randomize_norms(ParallelBlock().eval())
    example = (torch.randn(2, 6, 32),)
    gm = captured(module, example)
    layout(gm)
    before = count(gm, "permute")
    result = layer_norm(gm)
    cleanup(gm)  # the conversion emitted again for the norms is the existing one
    assert result.counts["converted_layer_norm"] == 2
    assert count(gm, "layer_norm") == 0
    assert count(gm, "permute") == before - 2 == 2  # one conversion in, one out
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not layer_norm(gm).changed


def test_a_norm_whose_output_stays_channels_last_is_left():
    class Side(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.n = nn.Linear(32, 32), nn.LayerNorm(32)

        def forward(self, x):
            x = x * 2.0
            return self.a(x) + x, self.n(x)  # the norm's output is returned as it is

    gm = captured(Side().eval(), (torch.randn(2, 6, 32),))
    layout(gm)
    assert layer_norm(gm).counts.get("converted_layer_norm", 0) == 0
