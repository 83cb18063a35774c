"""passes/rotary.py: rotary embeddings found by signed index replay and applied on (B, C, 1, S).

    conv ─ heads ─┬─ · cos ──────────────┐
                  └─ slice/neg/cat · sin ─┴─ + ─ sdpa   →   conv ─ (· cos + rot · sin)_C ─ heads ─ sdpa
"""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import ane_rewrite
from ane_rewrite.passes.rotary import _block_swap
from tests.helpers import count


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rotate_pairs(x):
    return torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)


class RopeAttention(nn.Module):
    def __init__(self, c=32, heads=4, rotary=None, pairs=False, seq=6):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.heads, self.d = heads, c // heads
        self.r, self.pairs = rotary or self.d, pairs
        angle = torch.arange(seq)[:, None] * torch.rand(self.r)[None]
        self.register_buffer("cos", angle.cos())
        self.register_buffer("sin", angle.sin())

    def rope(self, t):
        rot = rotate_pairs if self.pairs else rotate_half
        a, rest = t[..., :self.r], t[..., self.r:]
        return torch.cat([a * self.cos + rot(a) * self.sin, rest], dim=-1)

    def forward(self, x):
        b, s, c = x.shape
        q, k, v = (p(x).view(b, s, self.heads, self.d).transpose(1, 2) for p in (self.q, self.k, self.v))
        out = nn.functional.scaled_dot_product_attention(self.rope(q), self.rope(k), v)
        return out.transpose(1, 2).reshape(b, s, c)


@settings(max_examples=8, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), d=st.sampled_from([4, 8]), pairs=st.booleans(), partial=st.booleans())
def test_property_rotations_are_lowered_and_equivalent(heads, d, pairs, partial):
    c, seq = heads * d, 6
    module = RopeAttention(c, heads, rotary=d // 2 if partial and d >= 8 else None, pairs=pairs, seq=seq).eval()
    example = (torch.randn(2, seq, c),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    counts = fast.ane_report.counts()
    assert counts["rotary"]["rotary_on_channels"] == 2 and counts["attention"]["sdpa_per_head"] == 1
    assert count(fast, "scaled_dot_product_attention") == 0
    assert ane_rewrite.verify(module, fast, example).ok


@pytest.mark.parametrize("perm,sign,found", [
    ([4, 5, 6, 7, 0, 1, 2, 3], [-1, -1, -1, -1, 1, 1, 1, 1], (4, -1, 1)),   # rotate-half
    ([1, 0, 3, 2], [-1, 1, -1, 1], (1, -1, 1)),                             # interleaved pairs
    ([1, 0, 3, 2], [1, 1, 1, 1], None),                                     # a swap without the sign
    ([0, 1, 2, 3], [1, 1, 1, 1], None),
])
def test_block_swaps_with_signs(perm, sign, found):
    assert _block_swap(perm, sign) == found


def test_cos_varying_across_heads_is_declined():
    class PerHead(RopeAttention):
        def rope(self, t):
            cos = self.cos.expand(self.heads, -1, -1) * torch.arange(1.0, self.heads + 1)[:, None, None]
            return t * cos + rotate_half(t) * self.sin

    module, example = PerHead().eval(), (torch.randn(2, 6, 32),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    reasons = {d.reason for r in fast.ane_report.results if r.name == "rotary" for d in r.declined}
    assert reasons == {"cos and sin vary across heads"}
    assert ane_rewrite.verify(module, fast, example).ok
