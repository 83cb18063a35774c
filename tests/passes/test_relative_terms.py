"""passes/_relative_terms.py: logit terms gathered from q·pᵀ or k·pᵀ by a static relative-position
index (disentangled attention) are lowered per head with no gather left, for any offsets
function (clamped, bucketed), query or key rows, batch 1 or 2; other terms are declined."""
import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

import ane_rewrite
from ane_rewrite.rewrite.graph import aten
from ane_rewrite.passes._relative_terms import _offsets
from tests.helpers import count

C, H = 32, 4
D = C // H


class Disentangled(nn.Module):
    """softmax(q·kᵀ + c2p + p2c) v with c2p[i, j] = q_i · pk_{f(i − j)}, p2c[i, j] = k_j · pq_{f(j − i)}:
    a position table through its own projections, f a clamp or a log bucket, (B·H, S, d) operands."""

    def __init__(self, batch: int, seq: int, span: int, terms: tuple, bucket: bool):
        super().__init__()
        self.batch, self.seq, self.span, self.terms, self.bucket = batch, seq, span, terms, bucket
        self.q, self.k, self.v, self.o, self.pq, self.pk = (nn.Linear(C, C) for _ in range(6))
        self.positions = nn.Parameter(torch.randn(2 * span, C))

    def heads(self, t):
        return t.view(-1, t.shape[-2], H, D).transpose(1, 2).reshape(-1, t.shape[-2], D)

    def offsets(self, sign: int):
        i = torch.arange(self.seq)
        rel = sign * (i.view(-1, 1) - i.view(1, -1))
        if self.bucket:  # log buckets beyond half the span, as DeBERTa's make_log_bucket_position
            mid = self.span // 2
            far = mid + torch.ceil(torch.log(rel.abs().clamp(min=1).float() / mid) / torch.log(torch.tensor(4.0))
                                   * (mid - 1)).long()
            rel = torch.where(rel.abs() <= mid, rel, torch.sign(rel) * far)
        return torch.clamp(rel + self.span, 0, 2 * self.span - 1).expand(self.batch * H, -1, -1)

    def forward(self, x):
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        logits = torch.bmm(q, k.transpose(1, 2)) / D ** 0.5
        table = self.positions.unsqueeze(0)
        if "c2p" in self.terms:
            pk = self.heads(self.pk(table)).repeat(self.batch, 1, 1)
            logits = logits + torch.gather(torch.bmm(q, pk.transpose(1, 2)), -1, self.offsets(1)) / 3.0
        if "p2c" in self.terms:
            pq = self.heads(self.pq(table)).repeat(self.batch, 1, 1)
            p2c = torch.gather(torch.bmm(k, pq.transpose(1, 2)), -1, self.offsets(-1)).transpose(1, 2)
            logits = logits + p2c / 3.0
        out = torch.bmm(torch.softmax(logits, dim=-1), v)
        return self.o(out.view(self.batch, H, self.seq, D).transpose(1, 2).reshape(self.batch, self.seq, C))


def _lowered(module, example):
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert fast.ane_report.counts()["attention"].get("eager_logit_steps", 0) == 1, fast.ane_report
    for op in ("gather", "bmm", "matmul"):
        assert count(fast, op) == 0, op
    linears = [n for n in fast.graph.nodes if n.target == aten.linear.default]
    assert len(linears) == len(module.terms)  # the position projections: static, folded at export
    assert count(fast, "_softmax") == H
    report = ane_rewrite.verify(module, fast, example, draws=2)
    assert report.ok and report.psnr >= 60 and report.max_rel <= 1e-4, report
    return fast


@pytest.mark.parametrize("terms", [("c2p",), ("p2c",), ("c2p", "p2c")])
def test_each_term_is_lowered_per_head_without_a_gather(terms):
    module = Disentangled(1, 16, 8, terms, bucket=True).eval()
    _lowered(module, (torch.randn(1, 16, C),))


@settings(max_examples=8, deadline=None)
@given(batch=st.sampled_from([1, 2]), seq=st.integers(1, 20), span=st.integers(2, 12), bucket=st.booleans())
def test_any_offsets_function_and_length_stay_equivalent(batch, seq, span, bucket):
    torch.manual_seed(seq * 31 + span)
    module = Disentangled(batch, seq, span, ("c2p", "p2c"), bucket and span >= 4).eval()
    _lowered(module, (torch.randn(batch, seq, C),))


def test_offsets_read_a_toeplitz_index_and_refuse_any_other():
    i = torch.arange(5)
    idx = (i.view(-1, 1) - i.view(1, -1) + 3).clamp(0, 5)
    f = _offsets(idx.expand(2, 5, 5))
    assert f is not None and [int(f[c]) for c in range(9)] == [min(max(4 - c + 3, 0), 5) for c in range(9)]
    bad = idx.clone()
    bad[2, 1] += 1
    assert _offsets(bad) is None
    assert _offsets(torch.stack([idx, idx + 1])) is None  # differs between heads
