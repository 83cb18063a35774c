"""passes/_logit_steps.py: eager attention with steps between its product and its softmax
(softcapping, a temperature, position biases, per-head scales, BLOOM's (B·H, Q, K) form) is
lowered per head and stays equivalent; a term computed from the queries is declined by name."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.rewrite.graph import aten
from tests.helpers import count

B, S, C, H = 2, 12, 32, 4
D = C // H


class Steps(nn.Module):
    """q, k, v projections, then softmax(f(q·kᵀ)) v with f one of the forms below."""

    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
        self.table = nn.Parameter(torch.randn(H, S, S))      # a learned (already indexed) bias
        self.logit_scale = nn.Parameter(torch.randn(H, 1, 1))  # per-head scales
        self.register_buffer("slopes", torch.tensor([0.5, 0.25, 0.125, 0.0625]))

    def heads(self, x, proj):
        return proj(x).view(B, S, H, D).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.heads(x, self.q), self.heads(x, self.k), self.heads(x, self.v)
        if self.form == "alibi-bmm":  # BLOOM: (B·H, Q, K) products, the bias added before a view
            q3, k3, v3 = (t.reshape(B * H, S, D) for t in (q, k, v))
            distance = torch.arange(S).view(1, 1, S).float()
            alibi = (self.slopes.view(H, 1, 1) * distance).repeat(B, 1, 1)  # (B·H, 1, K)
            logits = alibi + torch.bmm(q3, k3.transpose(1, 2)) * D ** -0.5
            w = torch.softmax(logits.view(B, H, S, S), dim=-1).view(B * H, S, S)
            out = torch.bmm(w, v3).view(B, H, S, D)
        else:
            logits = q @ k.transpose(-1, -2)
            if self.form == "softcap":
                logits = torch.tanh(logits * D ** -0.5 / 20.0) * 20.0
            elif self.form == "temperature":
                logits = (logits + self.table) / 3.0
            elif self.form == "per-head-scale":
                logits = logits * self.logit_scale.clamp(max=4.0).exp() + self.table
            elif self.form == "cosine":  # Swin v2: normalised q and k, a learned per-head logit scale
                logits = nn.functional.normalize(q, dim=-1) @ nn.functional.normalize(k, dim=-1).transpose(-1, -2)
                logits = logits * self.logit_scale.clamp(max=4.6).exp() + self.table
            elif self.form == "query-term":  # a term computed from q (disentangled attention)
                logits = logits + 0.1 * (q @ q.transpose(-1, -2))
            out = torch.softmax(logits, dim=-1) @ v
        return self.o(out.transpose(1, 2).reshape(B, S, C))


@pytest.mark.parametrize("form", ["softcap", "temperature", "per-head-scale", "alibi-bmm", "cosine"])
def test_steps_between_the_product_and_the_softmax_are_replayed_per_head(form):
    torch.manual_seed(0)
    module, example = Steps(form).eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    counts = fast.ane_report.counts()["attention"]
    plain = form == "temperature"  # (x + t) / c: a mask inside the scale, eager_to_sdpa's form
    assert counts.get("sdpa_per_head" if plain else "eager_logit_steps", 0) == 1
    for op in ("matmul", "bmm", "linear"):
        assert count(fast, op) == 0, op
    assert count(fast, "_softmax") == H
    logits = [n for n in fast.graph.nodes if n.target == aten._softmax.default]
    assert all(n.meta["val"].shape == (B, S, 1, S) for n in logits)  # (B, K, 1, Q) per head
    report = ane_rewrite.verify(module, fast, example, draws=3)
    assert report.ok and report.psnr >= 60 and report.max_rel <= 1e-4, report


def test_a_logit_term_computed_from_the_queries_is_declined_with_its_node():
    torch.manual_seed(0)
    module, example = Steps("query-term").eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    declined = [d for r in fast.ane_report.results for d in r.declined if d.rule.startswith("eager_")]
    assert len(declined) == 1 and "computed from the queries or keys" in declined[0].reason
    assert declined[0].reason.split()[2] in {n.name for n in fast.graph.nodes}  # names the term's node
    assert ane_rewrite.verify(module, fast, example, draws=2).ok  # left as it was
