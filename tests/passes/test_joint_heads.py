"""passes/joint_heads.py: two token streams projected on their own, split into the same heads and
concatenated on the token axis (SD3's, Flux's joint attention) read as one head split.

    conv(x) ─ heads ─┐                            conv(x) ─┐
                     ├─ cat₂ ─ sdpa      →                  ├─ cat₃ ─ heads ─ per-head attention
    conv(t) ─ heads ─┘                            conv(t) ─┘
"""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite import passes
from tests.helpers import count


class Joint(nn.Module):
    def __init__(self, c=32, heads=4, text_heads=None):
        super().__init__()
        self.h, self.th = heads, text_heads or heads
        self.img = nn.ModuleList(nn.Linear(c, c) for _ in range(3))
        self.txt = nn.ModuleList(nn.Linear(c, c) for _ in range(3))
        self.out_img, self.out_txt = nn.Linear(c, c), nn.Linear(c, c)

    def forward(self, x, t):
        b, s, c = x.shape

        def split(y, h):
            return y.view(b, -1, h, c // h).transpose(1, 2)

        q, k, v = (torch.cat([split(i(x), self.h), split(j(t), self.th)], dim=2) for i, j in zip(self.img, self.txt))
        o = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return self.out_img(o[:, :s]), self.out_txt(o[:, s:])


def test_joint_streams_become_one_head_split_and_attention_is_lowered_per_head():
    module, example = Joint().eval(), (torch.randn(1, 12, 32), torch.randn(1, 5, 32))
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)  # toy sizes: lower it
    counts = fast.ane_report.counts()
    assert counts["joint_heads"] == {"joint_heads": 3} and counts["attention"]["sdpa_per_head"] == 1
    assert count(fast, "linear") == 0 and count(fast, "scaled_dot_product_attention") == 0
    report = ane_rewrite.verify(module, fast, example)
    assert report.ok and report.psnr >= 60, report
    again = passes.default_pipeline(lower_every_attention=True)(fast)
    assert not any(r.changed for r in again.results), again


class TokensFirst(Joint):
    """The streams joined on the token axis of (B, S, H, d), before the transpose to heads-first (Flux)."""

    def forward(self, x, t):
        b, s, c = x.shape

        def split(y):
            return y.view(b, -1, self.h, c // self.h)

        q, k, v = (torch.cat([split(i(x)), split(j(t))], dim=1).transpose(1, 2) for i, j in zip(self.img, self.txt))
        o = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return self.out_img(o[:, :s]), self.out_txt(o[:, s:])


def test_streams_joined_tokens_first_are_one_head_split_too():
    module, example = TokensFirst().eval(), (torch.randn(1, 12, 32), torch.randn(1, 5, 32))
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    counts = fast.ane_report.counts()
    assert counts["joint_heads"] == {"joint_heads": 3} and counts["attention"]["sdpa_per_head"] == 1
    assert count(fast, "linear") == 0
    assert ane_rewrite.verify(module, fast, example).psnr >= 60


class FusedText(Joint):
    """The text stream projects q, k and v with one fused linear: its heads lie in a wider tensor."""

    def __init__(self, c=32, heads=4):
        super().__init__(c, heads)
        self.txt_qkv = nn.Linear(c, 3 * c)

    def forward(self, x, t):
        b, s, c = x.shape

        def split(y):
            return y.view(b, -1, self.h, c // self.h).transpose(1, 2)

        tq, tk, tv = self.txt_qkv(t).chunk(3, dim=-1)
        q, k, v = (torch.cat([split(i(x)), split(j)], dim=2) for i, j in zip(self.img, (tq, tk, tv)))
        o = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return self.out_img(o[:, :s]), self.out_txt(o[:, s:])


def test_streams_whose_heads_lie_differently_are_declined_with_the_reason():
    module, example = FusedText().eval(), (torch.randn(1, 6, 32), torch.randn(1, 3, 32))
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    declined = [d for r in fast.ane_report.results for d in r.declined if d.rule == "joint_heads"]
    assert len(declined) == 3 and all("heads differ" in d.reason for d in declined)
    assert ane_rewrite.verify(module, fast, example).ok
