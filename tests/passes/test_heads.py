"""passes/_heads.py: which channels of a channels-first tensor each head reads, found by
replaying the head split on an index tensor.

    y_BC1S ─ squeeze ─ permute ─ view(B, S, H, d) ─ transpose(1, 2)  →  Heads(bases 0, d, 2d, …)
"""
import torch
from hypothesis import given, settings, strategies as st

from ane_rewrite.passes._heads import head_channels, replay, source_of
from tests.helpers import captured


def _q(module, y):
    """The node the module returns, and the captured graph's input."""
    gm = captured(module.eval(), (y,))
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0][0]
    source = next(n for n in gm.graph.nodes if n.op == "placeholder")
    return out, source


class Split(torch.nn.Module):
    def __init__(self, heads, interleaved=False):
        super().__init__()
        self.heads, self.interleaved = heads, interleaved

    def forward(self, y_BC1S):
        b, c, _, s = y_BC1S.shape
        x_BSC = y_BC1S.squeeze(2).permute(0, 2, 1)
        if self.interleaved:  # channel c·H + h belongs to head h: no block of the channel axis
            return x_BSC.reshape(b, s, c // self.heads, self.heads).permute(0, 3, 1, 2)
        return x_BSC.reshape(b, s, self.heads, c // self.heads).transpose(1, 2)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), heads=st.integers(1, 5), d=st.integers(1, 9), seq=st.integers(1, 11))
def test_property_a_head_split_is_found_with_its_channel_blocks(batch, heads, d, seq):
    q, source = _q(Split(heads), torch.randn(batch, heads * d, 1, seq))
    found = head_channels(q)
    assert found is not None and found.source is source
    assert found.bases == tuple(range(0, heads * d, d)) and found.dim == d
    assert not found.swapped and not found.spatial


def test_interleaved_heads_are_not_a_split_of_channel_blocks():
    q, _ = _q(Split(4, interleaved=True), torch.randn(2, 32, 1, 5))
    assert head_channels(q) is None


def test_a_feature_map_read_as_a_sequence_of_pixels():
    class Pixels(torch.nn.Module):
        def forward(self, y_BCHW):
            b, c, h, w = y_BCHW.shape
            return y_BCHW.reshape(b, 2, c // 2, h * w).transpose(-1, -2)  # (B, H, HW, d)

    q, source = _q(Pixels(), torch.randn(1, 8, 3, 4))
    found = head_channels(q)
    assert found is not None and found.spatial and found.bases == (0, 4) and found.dim == 4
    assert source_of(q) is source


def test_replay_runs_the_chain_on_any_tensor():
    q, source = _q(Split(2), torch.randn(1, 4, 1, 3))
    chain, node = [], q
    while node is not source:
        chain.append(node)
        node = node.args[0]
    index = torch.arange(12).view(1, 4, 1, 3)
    torch.testing.assert_close(replay(source, chain, index), Split(2)(index))
