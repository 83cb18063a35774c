"""passes/_rank_views.py (``windows``' rules): ops that read a rank-6 partition run at rank ≤ 4.

    Twins' locally grouped attention, (B, H, W, C) channels-last:
    reshape(B, h, ws, w, ws, C) ─ transpose(2, 3) ─ linear ─ reshape(B, h·w, ws², 3, n, d)
        ─ permute(3, 0, 1, 4, 2, 5) ─ unbind(0) ─ sdpa (B, h·w, n, ws², d) ─ transpose ─ … reverse
    → rank-≤4 block swaps ─ linear (B, H·W, C) ─ swaps ─ slice of a (3·B·h·w, n, ws², d) view
        ─ sdpa (B·h·w, n, ws², d) ─ swaps: no value of rank > 4

    Hiera's query pooling: q (B, n, G, s·t, d) ─ view(B, n, G, s, t, d) ─ amax(3)
    → view(B·n·G, s, t, d) ─ amax(1) ─ view(B, n, G, t, d)
"""
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.passes import cleanup
from ane_rewrite.passes.windows import windows
from tests.helpers import captured, outputs


def _max_rank(gm) -> int:
    return max((n.meta["val"].dim() for n in gm.graph.nodes
                if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor)),
               default=0)


class GroupedAttention(nn.Module):
    """Twins' LocallyGroupedAttn, written as it is (no padding)."""

    def __init__(self, c, heads, ws):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x):  # (B, H, W, C)
        b, hh, ww, c = x.shape
        h, w, ws = hh // self.ws, ww // self.ws, self.ws
        x = x.reshape(b, h, ws, w, ws, c).transpose(2, 3)
        qkv = self.qkv(x).reshape(b, h * w, ws * ws, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x.transpose(2, 3).reshape(b, h, w, ws, ws, c)
        return self.proj(x.transpose(2, 3).reshape(b, hh, ww, c))


class QueryPool(nn.Module):
    """Hiera's mask-unit attention with query pooling: heads before windows, q max-pooled."""

    def __init__(self, c, heads, windows, stride):
        super().__init__()
        self.heads, self.windows, self.stride = heads, windows, stride
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x):  # (B, N, C)
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, -1, self.windows, 3, self.heads, c // self.heads).permute(3, 0, 4, 2, 1, 5)
        q, k, v = qkv.unbind(0)
        q = q.view(b, self.heads, self.windows, self.stride, -1, c // self.heads).amax(dim=3)
        x = nn.functional.scaled_dot_product_attention(q, k, v)    # (B, heads, windows, t, d)
        return x.transpose(1, 3).reshape(b, -1, c)


def _check(module, example, rules):
    gm = captured(module, example)
    assert _max_rank(gm) >= 5
    result = windows(gm)
    for rule in rules:
        assert result.counts[rule] >= 1, (rule, result)
    assert _max_rank(gm) <= 4
    torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not windows(gm).changed
    return gm, result


@settings(max_examples=12, deadline=None)
@given(b=st.integers(1, 2), h=st.integers(1, 3), w=st.integers(1, 3), ws=st.integers(2, 5),
       heads=st.integers(1, 3), d=st.integers(1, 9))
def test_grouped_attention_of_any_size_runs_at_rank_4(b, h, w, ws, heads, d):
    module = GroupedAttention(heads * d, heads, ws).eval()
    example = (torch.randn(b, h * ws, w * ws, heads * d),)
    gm, _ = _check(module, example, ["low_rank_permute", "low_rank_linear", "low_rank_sdpa", "low_rank_slice"])
    sdpa = [n for n in gm.graph.nodes if n.target == torch.ops.aten.scaled_dot_product_attention.default]
    assert [tuple(n.meta["val"].shape) for n in sdpa] == [(b * h * w, heads, ws * ws, d)]


@settings(max_examples=12, deadline=None)
@given(b=st.integers(1, 2), heads=st.integers(1, 3), g=st.integers(1, 4), s=st.sampled_from([1, 2, 4]),
       t=st.integers(1, 6), d=st.integers(1, 8))
def test_query_pooling_of_any_size_runs_at_rank_4(b, heads, g, s, t, d):
    module = QueryPool(heads * d, heads, g, s).eval()
    example = (torch.randn(b, g * s * t, heads * d),)
    _check(module, example, ["low_rank_permute", "low_rank_reduction", "low_rank_sdpa", "low_rank_slice"])


def test_a_reduction_over_axes_apart_is_declined_with_the_reason():
    class Apart(nn.Module):
        def forward(self, x):  # (2, 3, 4, 5, 6): axes 1 and 3 are not adjacent
            return x.amax(dim=(1, 3)) + 1

    gm = captured(Apart().eval(), (torch.randn(2, 3, 4, 5, 6),))
    result = windows(gm)
    assert not result.counts.get("low_rank_reduction")
    assert any(d.rule == "low_rank_reduction" and "not adjacent" in d.reason for d in result.declined)


def test_grouped_query_heads_at_rank_5_are_declined_with_the_reason():
    class Grouped(nn.Module):
        def forward(self, q, k, v):
            return nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    example = (torch.randn(1, 2, 4, 5, 8), torch.randn(1, 2, 2, 5, 8), torch.randn(1, 2, 2, 5, 8))
    result = windows(captured(Grouped().eval(), example))
    assert any(d.rule == "low_rank_sdpa" and "other batch axes" in d.reason for d in result.declined)


def _perturbed(model):
    """Every parameter moved by a random 0.05 (Hiera's head starts at zero: its output would be 0)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def _exported_at_rank_4(model, fast):
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=1)
    assert report.ok and report.psnr >= 60, report
    ml = ane_rewrite.export(fast, fast.example_inputs)
    s = mil.summary(mil.program_ops(ml))
    assert s["max_rank"] <= 4 and s["rank5"] == 0
    executed = ane_rewrite.verify(model, ml, fast.example_inputs, draws=1, source=fast)
    assert executed.ok and executed.psnr >= 60, executed


def test_twins_converts_after_optimize():
    """Twins as it is has rank-6 tensors, which coremltools refuses; rewritten, it converts
    (windows of 3 over the 8×8 map of stage 2: padded to 9×9, then cropped)."""
    import timm

    model = timm.create_model("twins_svt_small", pretrained=False, img_size=64, depths=(1, 1, 1, 1),
                              embed_dims=(32, 64, 96, 128), num_heads=(1, 2, 3, 4), wss=(4, 3, 2, 2)).eval()
    model = _perturbed(model)
    fast = ane_rewrite.optimize(model)
    assert _max_rank(fast) <= 4
    assert fast.ane_report.counts()["windows"]["low_rank_sdpa"] == 4
    _exported_at_rank_4(model, fast)


def test_hiera_converts_after_optimize():
    """Hiera's unroll, mask-unit attention and query pooling, rewritten to rank ≤ 4."""
    import timm

    model = timm.create_model("hiera_tiny_224", pretrained=False, embed_dim=16, stages=(1, 1, 1, 1)).eval()
    model = _perturbed(model)
    fast = ane_rewrite.optimize(model)
    assert _max_rank(fast) <= 4
    assert fast.ane_report.counts()["windows"]["low_rank_reduction"] == 3
    _exported_at_rank_4(model, fast)


class LocalBlocks(nn.Module):
    """LongT5's local attention: blocks of r tokens, each attending to itself and its two
    neighbours (padded with zero blocks), over (B, blocks, r, H, d) with '...' einsums."""

    def __init__(self, r):
        super().__init__()
        self.r = r

    def forward(self, q, k, bias):  # (B, S, H, d), (B, S, H, d), (H, r, 3r)
        b, s, h, d = q.shape
        q, k = (t.reshape(b, s // self.r, self.r, h, d) for t in (q, k))
        k = nn.functional.pad(k, (0, 0, 0, 0, 0, 0, 1, 1))
        k = torch.cat([k[:, i:i + s // self.r] for i in range(3)], dim=2)         # (B, n, 3r, H, d)
        logits = torch.einsum("...qhd,...khd->...hqk", q, k) + bias
        return torch.einsum("...hqk,...khd->...qhd", logits.softmax(-1), k).reshape(b, s, h * d)


@settings(max_examples=8, deadline=None)
@given(b=st.integers(1, 2), n=st.integers(1, 4), r=st.integers(1, 4), h=st.integers(1, 3), d=st.integers(1, 6))
def test_local_blocks_with_neighbours_run_at_rank_4(b, n, r, h, d):
    example = (torch.randn(b, n * r, h, d), torch.randn(b, n * r, h, d), torch.randn(h, r, 3 * r))
    gm = captured(LocalBlocks(r).eval(), example)
    result = windows(gm)
    assert result.counts["low_rank_einsum"] == 2 and result.counts["low_rank_cat_pad"] >= 2
    late = cleanup(gm)
    assert late.counts["low_rank_elementwise"] >= 1 and _max_rank(gm) <= 4
    torch.testing.assert_close(outputs(gm, example), LocalBlocks(r)(*example), rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 3), min_size=5, max_size=6), data=st.data())
def test_broadcast_elementwise_at_rank_5_is_equal_or_declined(sizes, data):
    other = [1 if data.draw(st.booleans()) else s for s in sizes]

    class Add(nn.Module):
        def forward(self, a, c):
            return (a * 2) + c

    example = (torch.randn(sizes), torch.randn(other))
    gm = captured(Add().eval(), example)
    result = cleanup(gm)
    torch.testing.assert_close(outputs(gm, example), Add()(*example))
    computed = [n for n in gm.graph.nodes if n.op == "call_function" and n.target != torch.ops.aten.reshape.default]
    assert all(n.meta["val"].dim() <= 4 for n in computed) or any(  # the rank-5 inputs and output are views
        d.rule == "low_rank_elementwise" for d in result.declined)


def test_long_t5_local_attention_converts_after_optimize():
    """LongT5's encoder (local attention) as it is fails in coremltools' rank-5 einsum."""
    import transformers

    cfg = transformers.LongT5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, local_radius=4,
                                    encoder_attention_type="local")
    model = transformers.LongT5Model(cfg).eval()
    fast = ane_rewrite.optimize(model, seq_len=32)
    assert _max_rank(fast) <= 4
    assert fast.ane_report.counts()["windows"]["low_rank_einsum"] == 4
    _exported_at_rank_4(model, fast)
