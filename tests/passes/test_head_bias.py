"""passes/_head_bias.py: a bias added to the heads after they were split off a fused projection
(DeBERTa's q_bias and v_bias) moves onto the projection's channels, so the attention is lowered
per head; the bias stays a parameter."""
import torch
from torch import nn

import ane_rewrite
from tests.helpers import count

B, S, C, H = 2, 10, 32, 4
D = C // H


class FusedWithHeadBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_proj = nn.Linear(C, 3 * C, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.randn(C)), nn.Parameter(torch.randn(C))
        self.out = nn.Linear(C, C)

    def heads(self, t):
        return t.view(t.shape[0], -1, H, t.shape[-1] // H).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.heads(self.in_proj(x)).chunk(3, dim=-1)  # heads interleave q, k, v channels
        q = q + self.heads(self.q_bias[None, None, :])
        v = v + self.heads(self.v_bias[None, None, :])
        w = torch.softmax(q @ k.transpose(-1, -2) / D ** 0.5, dim=-1)
        return self.out((w @ v).transpose(1, 2).reshape(B, S, C))


def test_head_biases_move_onto_the_projection_and_the_attention_is_lowered():
    module, example = FusedWithHeadBias().eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    counts = fast.ane_report.counts()["attention"]
    assert counts.get("head_bias_to_channels") == 2 and counts.get("sdpa_per_head") == 1, counts
    assert count(fast, "matmul") == 0 and count(fast, "linear") == 0 and count(fast, "_softmax") == H
    assert dict(fast.named_parameters()).keys() == dict(module.named_parameters()).keys()
    report = ane_rewrite.verify(module, fast, example, draws=2)
    assert report.ok and report.psnr >= 60, report
    other = FusedWithHeadBias().eval()
    fast.load_state_dict(other.state_dict())  # the biases are read from their parameters
    with torch.no_grad():
        torch.testing.assert_close(fast(*example), other(*example), rtol=1e-4, atol=1e-5)


def test_a_bias_of_heads_not_read_by_a_product_is_left():
    class Side(FusedWithHeadBias):
        def forward(self, x):
            q, _, _ = self.heads(self.in_proj(x)).chunk(3, dim=-1)
            return q + self.heads(self.q_bias[None, None, :])

    module, example = Side().eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert "head_bias_to_channels" not in fast.ane_report.counts()["attention"]
    assert ane_rewrite.verify(module, fast, example, draws=1).ok
