"""passes/_propagation.py: the channels-first layout spreads past the ops between projections.

    to ─ conv ─ from ─ gelu ─ to ─ conv ─ from ─ (+x)   →   to ─ conv ─ gelu ─ conv ─ (+to(x)) ─ from
"""
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from ane_rewrite import passes
from ane_rewrite.passes._propagation import PROPAGATION_RULES
from ane_rewrite.passes.layout import addmm_to_conv, layout, linear_to_conv
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


def _run(module, example):
    gm = captured(module, example)
    return gm, layout(gm)


def _close(gm, module, example):
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)


class HeadSplitMerge(nn.Module):
    """q = linear(x).view(B, S, H, d).transpose(1, 2); out = linear(q.transpose(1, 2).reshape(B, S, C))."""

    def __init__(self, c=32, heads=4):
        super().__init__()
        self.heads = heads
        self.q, self.o = nn.Linear(c, c), nn.Linear(c, c)

    def forward(self, x):
        b, s, c = x.shape
        q = self.q(x).view(b, s, self.heads, c // self.heads).transpose(1, 2)   # (B, H, S, d)
        q = torch.tanh(q)
        return self.o(q.transpose(1, 2).reshape(b, s, c))


def test_head_split_and_merge_of_the_channel_axis_cost_one_transpose_each():
    """conv ─ reshape(B,H,d,S) ─ transpose ─ tanh ─ transpose ─ reshape(B,C,1,S) ─ conv"""
    module, example = HeadSplitMerge().eval(), (torch.randn(2, 6, 32),)
    gm, result = _run(module, example)
    assert result.counts["sink_split_view"] == 1 and result.counts["hoist_merge_view"] == 1
    # conversions in and out, and one transpose on each side of the head-wise tanh
    assert count(gm, "permute") == 4
    assert count(gm, "squeeze") == 1 and count(gm, "unsqueeze") == 1  # the region's boundaries only
    _close(gm, module, example)
    assert not layout(gm).changed


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 2), seq=st.integers(1, 7), heads=st.integers(1, 5), head_dim=st.integers(1, 6))
def test_property_head_split_merge_is_equivalent(batch, seq, heads, head_dim):
    module = HeadSplitMerge(c=heads * head_dim, heads=heads).eval()
    example = (torch.randn(batch, seq, heads * head_dim),)
    gm, _ = _run(module, example)
    _close(gm, module, example)


class PixelMlp(nn.Module):
    """A conv stem, then its pixels as a sequence: LayerNorm and an MLP on (B, H·W, C), back to
    (B, C, H, W) for the next conv (PVT, SegFormer, Swin's MLP half)."""

    def __init__(self, c=16):
        super().__init__()
        self.stem, self.out = nn.Conv2d(3, c, 2, stride=2), nn.Conv2d(c, c, 1)
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(c), nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, img):
        x = self.stem(img)
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        seq = seq + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(seq))))
        return self.out(seq.reshape(b, h, w, c).permute(0, 3, 1, 2))


def test_pixels_as_a_sequence_stay_channels_first():
    module, example = PixelMlp().eval(), (torch.randn(2, 3, 8, 12),)
    gm = captured(module, example)
    result = passes.default_pipeline()(gm)
    assert result.counts()["layout"]["sink_spatial_view"] >= 1
    assert count(gm, "permute") == 0 and count(gm, "layer_norm") == 0  # a channel norm, no transposes
    _close(gm, module, example)


def test_a_branch_on_the_sign_and_expm1_stay_channels_first():
    """linear ─ where(x > 0, f(x), g(expm1(x))) ─ linear (Apertus' xIELU, its learned scalars a
    number and a (1, 1, 1) tensor): one region, no conversion inside."""
    class XIelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.alpha = nn.Linear(16, 32), nn.Linear(32, 8), nn.Parameter(torch.full((1, 1, 1), 0.8))

        def forward(self, x):
            y = self.a(x)
            y = torch.where(y > 0, self.alpha * y * y + 0.5 * y, torch.expm1(y.clamp(max=0.0)) * 0.8 - 0.5 * y)
            return self.b(y)

    module, example = XIelu().eval(), (torch.randn(2, 7, 16),)
    gm = captured(module, example)
    CONVERT_ONLY(gm)
    result = PROPAGATE(gm)
    assert result.counts["sink_where"] == 1 and result.counts["sink_unary"] >= 2
    moves = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.ops.aten.permute.default
             and n.meta["val"].numel() > 1]  # (the (1, 1, 1) scalar's permute moves nothing)
    assert len(moves) == 2, [n.name for n in moves]  # the conversion in, and the one out
    torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not PROPAGATE(gm).changed
