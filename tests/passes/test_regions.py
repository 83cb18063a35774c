"""passes/_regions.py: the projections of an attention the attention pass declines keep their
form (converted alone they only add layout copies around it), and the report says why; the
rest of the model is still rewritten."""
import torch
from torch import nn

import ane_rewrite
from tests.helpers import count
from tests.passes.test_logit_steps import B, C, S, Steps


class Block(nn.Module):
    def __init__(self, form):
        super().__init__()
        self.attn, self.ffn = Steps(form), nn.Sequential(nn.Linear(C, 2 * C), nn.GELU(), nn.Linear(2 * C, C))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.ffn(x)


def test_a_declined_attention_keeps_its_projections_and_the_rest_is_rewritten():
    torch.manual_seed(0)
    module, example = Block("query-term").eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    kept = [d for r in fast.ane_report.results for d in r.declined if d.rule == "linear_to_conv"]
    assert len(kept) == 4 and all(d.reason.startswith("kept as a linear: attention") for d in kept)
    assert count(fast, "linear") == 4 and count(fast, "conv2d") == 2  # q, k, v, o kept; the FFN converted
    assert ane_rewrite.verify(module, fast, example, draws=2).ok


def test_a_lowered_attention_leaves_nothing_kept():
    torch.manual_seed(0)
    module, example = Block("softcap").eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    assert count(fast, "linear") == 0 and count(fast, "conv2d") == 6
    assert not [d for r in fast.ane_report.results for d in r.declined if d.reason.startswith("kept as a linear")]
