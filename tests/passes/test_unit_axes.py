"""_unit_axes: rank-5 selects and expands whose extra axes are of size 1 run at rank ≤ 4.

    before: y_BC11 ─ reshape(1, 1, 2, 4, 32) ─ select(3, −1) ─ (1, 1, 2, 32)
    after:  y_BC11 ─ reshape(2, 4, 32) ─ select(1, −1) ─ reshape(1, 1, 2, 32)

    before: x (1, 1, 1, 8) ─ unsqueeze(−1) ─ expand(1, 1, 1, 8, 2) ─ reshape(1, 1, 1, 16)
    after:  x ─ reshape(8, 1) ─ expand(8, 2) ─ reshape(1, 1, 1, 16)
"""
import torch
from torch import nn

from ane_rewrite.frontend.capture import capture
from ane_rewrite.passes import cleanup


class FusedSplit(nn.Module):
    """A fused k/v projection split at one token (Falcon's grouped layout)."""

    def forward(self, y):  # (1, 256, 1, 1)
        g = y.reshape(1, 1, 2, 4, 32)
        return g[:, :, :, -1] * 2 + g[:, :, :, -2]


class Interleave(nn.Module):
    """A rotary table interleaved pairwise (GPT-J's repeat_interleave)."""

    def forward(self, x):  # (1, t, 1, 8)
        return torch.repeat_interleave(x, 2, dim=-1) + 1


def _run(module, example):
    gm = capture(module, example)
    result = cleanup(gm)
    return gm, result


def _max_rank(gm):
    return max(n.meta["val"].dim() for n in gm.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor))


def test_a_fused_split_at_one_token_runs_at_rank_4():
    module, example = FusedSplit().eval(), (torch.randn(1, 256, 1, 1),)
    gm, result = _run(module, example)
    assert result.counts["unit_axes_select"] == 2 and _max_rank(gm) <= 4
    torch.testing.assert_close(gm(*example), module(*example), rtol=0, atol=0)
    again = cleanup(gm)
    assert not again.counts.get("unit_axes_select")


def test_an_interleaved_table_at_one_and_at_many_tokens_runs_at_rank_4():
    for tokens in (1, 6):
        module, example = Interleave().eval(), (torch.randn(1, tokens, 1, 8),)
        gm, result = _run(module, example)
        assert result.counts["unit_axes_expand"] == 1 and _max_rank(gm) <= 4, tokens
        torch.testing.assert_close(gm(*example), module(*example), rtol=0, atol=0)


def test_a_rank_5_select_with_five_axes_over_1_is_declined_with_its_rank():
    class Wide(nn.Module):
        def forward(self, y):  # (2, 3, 4, 5, 6) → select keeps rank 4, but the view is rank 5 of sizes > 1
            return y.reshape(2, 3, 4, 5, 6).select(2, 0) + 1

    gm, result = _run(Wide().eval(), (torch.randn(6, 120),))
    assert any("rank 5 without its axes of size 1" in d.reason for d in result.declined)
