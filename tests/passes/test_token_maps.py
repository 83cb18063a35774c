"""passes/_token_maps.py: a convolution's map read as tokens stays channels-first, and a mean
over the tokens runs on the channels-first tensor: a hybrid conv → tokens → norm → MLP →
pooled head has no transpose left."""
import pytest
import torch
from torch import nn

import ane_rewrite
from tests.helpers import count
from tests.zoo import randomize_norms


class Hybrid(nn.Module):
    def __init__(self, pool: str):
        super().__init__()
        self.pool = pool
        self.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(32)
        self.fc1, self.fc2, self.head = nn.Linear(32, 64), nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        tokens = self.stem(x).flatten(2).transpose(1, 2)           # (B, H·W, C)
        tokens = tokens + self.fc2(nn.functional.gelu(self.fc1(self.norm(tokens))))
        if self.pool == "tokens":
            return self.head(tokens.mean(1))
        if self.pool == "tokens-keepdim":
            return self.head(tokens.mean(dim=1, keepdim=True))
        return tokens.mean(-1)                                       # over the channels: left as it is


@pytest.mark.parametrize("pool", ["tokens", "tokens-keepdim"])
def test_tokens_of_a_map_and_their_mean_need_no_transpose(pool):
    module, example = randomize_norms(Hybrid(pool).eval()), (torch.randn(2, 3, 16, 12),)
    fast = ane_rewrite.optimize(module, example)
    counts = fast.ane_report.counts()["layout"]
    assert counts.get("map_tokens") == 1 and counts.get("sink_mean") == 1, counts
    # (the (B, 1, 10) output's own from() moves only axes of size 1: cleanup makes it a reshape)
    assert count(fast, "permute") == 0 and count(fast, "linear") == 0
    report = ane_rewrite.verify(module, fast, example, draws=2)
    assert report.ok and report.psnr >= 60, report


def test_a_mean_over_the_channels_is_left_and_the_model_equivalent():
    module, example = randomize_norms(Hybrid("channels").eval()), (torch.randn(2, 3, 16, 12),)
    fast = ane_rewrite.optimize(module, example)
    assert "sink_mean" not in fast.ane_report.counts()["layout"]
    assert ane_rewrite.verify(module, fast, example, draws=2).ok
