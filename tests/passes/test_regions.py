"""passes/_regions.py: the projections of an attention the attention pass declines keep their
form (converted alone they only add layout copies around it), and the report says why; the
rest of the model is still rewritten. One whose every product batched_heads reads as it lies
adds no copy: its projections are converted."""
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


def test_a_declined_attention_read_as_it_lies_converts_its_projections():
    """Declined by the attention pass (a term computed from q), but every product of it — the
    logits, q·qᵀ, the values — read as it lies by batched_heads: no copy around it, so its
    projections are convs too (2 transposes exported, the tokens in and out; 4 as is)."""
    torch.manual_seed(0)
    module, example = Block("query-term").eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    declined = [d for r in fast.ane_report.results for d in r.declined if d.rule.startswith("eager_")]
    assert declined and "computed from the queries or keys" in declined[0].reason  # still named
    assert fast.ane_report.counts()["batched_heads"].get("batched_logits") == 2
    assert count(fast, "linear") == 0 and count(fast, "conv2d") == 6
    assert ane_rewrite.verify(module, fast, example, draws=2).ok


def test_a_lowered_attention_leaves_nothing_kept():
    torch.manual_seed(0)
    module, example = Block("softcap").eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    assert count(fast, "linear") == 0 and count(fast, "conv2d") == 6
    assert not [d for r in fast.ane_report.results for d in r.declined if d.reason.startswith("kept as a linear")]


class Folded(nn.Module):
    """Attention on (B·H, S, d) heads through bmm, as WavLM and nn.MultiheadAttention compute it."""

    def __init__(self, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))

    def forward(self, x):
        b, s, c = x.shape
        split = lambda t: t.view(b, s, self.heads, c // self.heads).transpose(1, 2).reshape(b * self.heads, s, -1)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        w = torch.bmm(q, k.transpose(1, 2)).mul(0.25).softmax(-1)
        out = torch.bmm(w, v).view(b, self.heads, s, -1).transpose(1, 2).reshape(b, s, c)
        return self.o(out)


def test_an_attention_left_batched_that_no_rule_reads_keeps_its_projections(tmp_path):
    """Its per-head form would not pay and batched_heads does not read (B·H, S, d) heads: its
    converted projections would only add copies around it, so they stay linears."""
    from ane_rewrite.coreml.mil import op_mix, program_ops
    from ane_rewrite.rewrite.rules import COST

    torch.manual_seed(0)
    module, example = Folded().eval(), (torch.randn(1, S, C),)
    fast = ane_rewrite.optimize(module, example)
    declined = [d for r in fast.ane_report.results for d in r.declined]
    assert any(d.kind == COST for d in declined)
    kept = [d for d in declined if d.rule == "linear_to_conv"]
    assert len(kept) == 4 and all("no rule reads its heads" in d.reason for d in kept), kept
    transposes = [op_mix(program_ops(ane_rewrite.export(m, example, tmp_path / f"{i}.mlpackage", progress=False)))
                  ["transpose"] for i, m in enumerate((module, fast))]
    assert transposes[1] <= transposes[0], transposes
    assert ane_rewrite.verify(module, fast, example, draws=2).ok
    every = ane_rewrite.optimize(module, example, lower_every_attention=True)  # lowered when asked
    assert count(every, "linear") == 0
