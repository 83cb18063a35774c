"""_wide_heads: a projection wider than one ANE conv in its outputs (an LM head) becomes convs
of at most 16384 output channels whose logits are concatenated in order.

    before: x_BSC ─ linear(W 40000×16) ─ logits_BSV
    after:  x_BC1S ─┬─ conv2d(W[0:13334])      ─┐
                    ├─ conv2d(W[13334:26668])  ─┼─ cat(dim=1) ─ logits_BSV
                    └─ conv2d(W[26668:40000])  ─┘
"""
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from ane_rewrite.hardware import MAX_DIM
from ane_rewrite.passes._wide_heads import pieces
from tests.passes.test_layout import TiedLM, _close, _run, count


@settings(max_examples=50, deadline=None)
@given(out_channels=st.integers(1, 10 * MAX_DIM))
def test_pieces_cover_the_outputs_in_order_and_each_fits(out_channels):
    ps = pieces(out_channels)
    assert ps[0][0] == 0 and ps[-1][1] == out_channels
    assert all(a[1] == b[0] for a, b in zip(ps, ps[1:]))
    assert all(0 < end - start <= MAX_DIM for start, end in ps)
    assert len(ps) == -(-out_channels // MAX_DIM)  # as few as fit


def _convs(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]


def test_an_lm_head_of_40000_classes_becomes_three_convs_concatenated():
    module = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 40000)).eval()
    example = (torch.randn(1, 5, 16),)
    gm, result = _run(module, example)
    assert count(gm, "linear") == 0 and result.counts["linear_to_conv"] == 2
    widths = sorted(c.meta["val"].shape[1] for c in _convs(gm))
    assert widths == [16, 13332, 13334, 13334]
    assert not result.declined
    _close(gm, module, example)
    again, second = _run(gm, example)  # run twice: nothing left to do
    assert count(again, "linear") == 0 and not second.counts.get("linear_to_conv")


def test_a_head_tied_to_the_embedding_is_sliced_in_matmuls():
    module, example = TiedLM(20000).eval(), (torch.randint(0, 20000, (1, 6)),)
    gm, result = _run(module, example)
    assert count(gm, "linear") == 0
    products = [n for n in gm.graph.nodes if n.op == "call_function" and "matmul" in str(n.target)]
    assert sorted(p.meta["val"].shape[1] for p in products) == [10000, 10000]
    _close(gm, module, example)
