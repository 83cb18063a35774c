"""passes/_channel_heads.py: cross-covariance attention (softmax over each head's d × d channel
logits, XCiT's and EdgeNeXt's) reads its channel-major heads straight off the channels-first
projections, so its projections stay convolutions and the export moves no data between the
channel axis and the tokens; heads the rule cannot read are declined with the reason."""
import torch
from torch import nn
from torch.nn import functional as F

import ane_rewrite
from ane_rewrite.coreml.mil import op_mix, program_ops
from ane_rewrite.passes import batched_heads
from ane_rewrite.rewrite.graph import aten, is_op, rank
from tests.helpers import count

B, S, C, H = 2, 20, 32, 4
D = C // H


class CrossCovariance(nn.Module):
    """q, k, v as (B, H, d, S); L2-normalised over the tokens; a per-head temperature."""

    def __init__(self, scramble: bool = False):
        super().__init__()
        self.scramble = scramble
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.temperature = nn.Parameter(torch.rand(H, 1, 1) + 0.5)
        self.norm = nn.LayerNorm(C)

    def forward(self, x):
        y = self.qkv(self.norm(x))
        if self.scramble:  # heads read from every other channel: not at equal steps of a head
            y = y.reshape(B, S, 3 * C // 2, 2).transpose(-1, -2).reshape(B, S, 3 * C)
        q, k, v = y.reshape(B, S, 3, H, D).permute(2, 0, 3, 4, 1).unbind(0)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return x + self.proj(out.permute(0, 3, 1, 2).reshape(B, S, C))


def _transposes(model, example, tmp_path, name) -> int:
    ml = ane_rewrite.export(model, example, tmp_path / f"{name}.mlpackage", progress=False)
    return op_mix(program_ops(ml))["transpose"]


def test_cross_covariance_attention_reads_its_heads_as_they_lie(tmp_path):
    module = nn.Sequential(CrossCovariance(), CrossCovariance()).eval()
    example = (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    counts = fast.ane_report.counts()["batched_heads"]
    assert counts.get("channel_values") == 2 and counts.get("channel_heads") == 6, counts  # q, k, v per layer
    assert count(fast, "linear") == 0  # the projections stay convolutions: the attention is read
    assert not any(rank(n) is not None and rank(n) > 4 for n in fast.graph.nodes)
    # the only permute left is k's swap of the logits' product, which the export folds into it
    for n in fast.graph.nodes:
        if is_op(n, aten.permute) and list(n.args[1]) != [0, 2, 1]:  # (B, S, C) in and out
            assert list(n.args[1]) == [0, 1, 3, 2] and all(is_op(u, aten.matmul) for u in n.users), n
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
    assert _transposes(fast, example, tmp_path, "new") == 2  # the tokens in and out
    assert _transposes(module, example, tmp_path, "base") > 2
    assert not batched_heads(fast).counts  # a second run finds nothing left to read


def test_heads_not_at_equal_steps_are_declined_and_left_as_captured():
    module = CrossCovariance(scramble=True).eval()
    example = (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    assert "channel_values" not in fast.ane_report.counts()["batched_heads"]
    assert count(fast, "linear") == 2  # the attention is not read: its projections kept as captured
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
