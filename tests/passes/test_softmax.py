"""passes/softmax.py: per-head attention chunked along the query axis, remainder kept.

    einsum ─ softmax₁ ─ einsum        →  split(q, Q) ─┬─ einsum ─ softmax₁ ─ einsum ─┐
                                                      └─ einsum ─ softmax₁ ─ einsum ─┴─ cat(Q)
"""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import ane_rewrite
from ane_rewrite.rewrite.graph import aten
from ane_rewrite.passes.softmax import chunk_size, make_softmax_pass
from tests import zoo
from tests.helpers import count


@pytest.mark.parametrize("batch,keys,queries,max_q,max_bytes,expected", [
    (1, 128, 128, 512, 1 << 20, 128),     # small: one chunk
    (1, 700, 700, 512, 1 << 20, 512),     # capped by queries: 512 + 188
    (8, 512, 512, 512, 1 << 20, 128),     # capped by bytes: 1 MiB / (8 · 512 · 2) = 128
    (1, 100, 100, 40, 1 << 20, 32),       # rounded down to a multiple of 32
    (64, 4096, 4096, 512, 1 << 20, 32),   # never below 32
])
def test_chunk_size(batch, keys, queries, max_q, max_bytes, expected):
    assert chunk_size(batch, keys, queries, max_q, max_bytes) == expected


def test_sequence_700_is_chunked_512_plus_remainder_and_equivalent():
    module = zoo.SelfAttention(c=32, heads=2).eval()
    example = (torch.randn(1, 700, 32),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert fast.ane_report.counts()["softmax"]["chunk_queries"] == 2
    softmaxes = [n for n in fast.graph.nodes if n.target == aten._softmax.default]
    assert sorted(n.meta["val"].shape[3] for n in softmaxes) == [188, 188, 512, 512]  # nothing dropped
    report = ane_rewrite.verify(module, fast, example, draws=2)
    assert report.ok, report


def test_padding_mask_is_shared_across_chunks():
    model, _ = zoo.distilbert(layers=1)
    example = zoo.padded(model, seq=100)
    fast = ane_rewrite.optimize(model, example, max_queries_per_chunk=32, lower_every_attention=True)
    assert count(fast, "_softmax") == 4 * math.ceil(100 / 32)
    assert ane_rewrite.verify(model, fast, example).ok


def test_small_attention_is_not_chunked():
    module, example = zoo.SelfAttention(c=16, heads=2).eval(), (torch.randn(1, 64, 16),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert fast.ane_report.counts()["softmax"] == {} and count(fast, "_softmax") == 2


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        make_softmax_pass(max_queries=0)


@settings(max_examples=10, deadline=None)
@given(seq=st.integers(33, 150), heads=st.integers(1, 3), head_dim=st.integers(1, 5),
       max_queries=st.integers(32, 96), causal=st.booleans())
def test_property_chunks_cover_every_query(seq, heads, head_dim, max_queries, causal):
    module = zoo.SelfAttention(c=heads * head_dim, heads=heads, causal=causal).eval()
    example = (torch.randn(1, seq, heads * head_dim),)
    fast = ane_rewrite.optimize(module, example, max_queries_per_chunk=max_queries, lower_every_attention=True)
    size = chunk_size(1, seq, seq, max_queries, 1 << 20)
    assert count(fast, "_softmax") == heads * math.ceil(seq / size)
    with torch.no_grad():
        torch.testing.assert_close(fast(*example), module(*example), rtol=1e-5, atol=1e-5)
    assert not make_softmax_pass(max_queries).__call__(fast).changed
