"""passes/layout.py: linears to 1×1 convs on channels-first layouts, and propagation.

    linear(x_BSC) ─ gelu ─ linear      →   to ─ conv ─ gelu ─ conv ─ from
"""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from ane_rewrite import passes
from ane_rewrite.passes.layout import layout
from tests.helpers import captured, count, outputs
from tests.zoo import MlpBlock


def _run(module, example):
    gm = captured(module, example)
    result = layout(gm)
    return gm, result


def _close(gm, module, example):
    with torch.no_grad():
        expected = module(*example)
    got = outputs(gm, example)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


class Chain(nn.Module):
    def __init__(self, c_in, hidden, c_out, act=torch.nn.functional.gelu):
        super().__init__()
        self.a, self.b = nn.Linear(c_in, hidden), nn.Linear(hidden, c_out)
        self.act = act

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def test_linear_chain_on_BSC_shares_one_layout_region():
    """to ─ conv ─ gelu ─ conv ─ from: one conversion at each boundary, none between."""
    module, example = Chain(24, 40, 8).eval(), (torch.randn(2, 7, 24),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 2
    assert result.counts["sink_unary"] == 1
    assert count(gm, "linear") == 0 and count(gm, "conv2d") == 2
    assert count(gm, "permute") == 2  # one in, one out
    conv_inputs = [n.args[0].meta["val"].shape for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert [tuple(s) for s in conv_inputs] == [(2, 24, 1, 7), (2, 40, 1, 7)]
    _close(gm, module, example)


def test_rank2_linear_becomes_BC11_conv():
    module, example = Chain(16, 32, 4, act=torch.relu).eval(), (torch.randn(3, 16),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 2
    assert count(gm, "permute") == 0 and count(gm, "conv2d") == 2
    _close(gm, module, example)


def test_channels_last_BHWC_linear_becomes_NCHW_conv_without_permutes_between():
    class ConvNeXtLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 8)

        def forward(self, x_BCHW):
            y = self.dw(x_BCHW).permute(0, 2, 3, 1)          # (B, H, W, C)
            y = self.fc2(torch.nn.functional.gelu(self.fc1(y)))
            return x_BCHW + y.permute(0, 3, 1, 2)

    module, example = ConvNeXtLike().eval(), (torch.randn(2, 8, 5, 6),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 2
    assert count(gm, "permute") == 0  # the model's own permutes cancel against the conversions
    _close(gm, module, example)


def test_addmm_with_transposed_weight_becomes_conv():
    class Conv1D(nn.Module):  # GPT-2's projection
        def __init__(self, nx, nf):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
            self.bias = nn.Parameter(torch.randn(nf))

        def forward(self, x):
            out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
            return out.view(x.size()[:-1] + (self.weight.size(1),))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Conv1D(16, 48), Conv1D(48, 16)

        def forward(self, x):
            return x + self.b(torch.tanh(self.a(x)))

    module, example = Block().eval(), (torch.randn(2, 5, 16),)
    gm, result = _run(module, example)
    assert result.counts["addmm_flattened_to_conv"] == 2
    assert count(gm, "addmm") == 0 and count(gm, "conv2d") == 2
    _close(gm, module, example)


def test_addmm_after_a_head_merge_is_a_BC1S_conv():
    """GPT-2's attention output: merge heads (B, S, H, d) → view(B·S, H·d) → addmm → (B, S, O).
    The flattening view folds with the merge; the conv must still run on (B, C, 1, S), not on
    (B·S, C, 1, 1) (tokens as batch, a last axis of 1: 32× padding on the ANE)."""
    class Merge(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(16, 24) * 0.1)
            self.bias = nn.Parameter(torch.randn(24))

        def forward(self, x_BHSd):
            x_BSHd = x_BHSd.transpose(1, 2)
            merged = x_BSHd.reshape(*x_BSHd.shape[:2], 16)
            out = torch.addmm(self.bias, merged.view(-1, 16), self.weight)
            return out.view(*x_BSHd.shape[:2], 24)

    module, example = Merge().eval(), (torch.randn(2, 4, 5, 4),)
    gm = captured(module, example)
    passes.default_pipeline()(gm)
    convs = [n for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert len(convs) == 1 and tuple(convs[0].meta["val"].shape) == (2, 24, 1, 5)
    _close(gm, module, example)


class TiedLM(nn.Module):
    """An LM head tied to the embedding table of ``vocab`` rows."""

    def __init__(self, vocab: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.fc = nn.Linear(16, 16)

    def forward(self, ids):
        h = torch.tanh(self.fc(self.emb(ids)))
        return torch.nn.functional.linear(h, self.emb.weight)


def test_tied_weight_is_read_as_it_is():
    """A linear whose weight another op also reads (an LM head tied to the embedding) becomes a
    matmul with the 2-D weight on the channels-first layout: its 4-D view would be a second
    copy of the table in the export."""
    module, example = TiedLM(50).eval(), (torch.randint(0, 50, (2, 7)),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 2 and count(gm, "linear") == 0
    assert count(gm, "conv2d") == 1 and count(gm, "matmul") == 1
    weight_views = [n for n in gm.graph.nodes if n.target == torch.ops.aten.view.default
                    and n.args[0].op == "get_attr" and n.args[0].target == "emb.weight"]
    assert weight_views == []
    _close(gm, module, example)


def test_a_weight_shared_by_several_linears_is_one_conv_weight():
    """ALBERT: one layer's weights serve every layer. Every use becomes a conv, all reading
    one 4-D view of the one parameter (after cleanup), so the export holds it once."""
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            for _ in range(3):
                x = torch.tanh(self.fc(x)) + x
            return x

    module, example = Shared().eval(), (torch.randn(2, 7, 16),)
    gm = captured(module, example)
    passes.default_pipeline()(gm)
    assert count(gm, "linear") == 0 and count(gm, "matmul") == 0 and count(gm, "conv2d") == 3
    views = [n for n in gm.graph.nodes if n.op == "call_function" and n.args and getattr(n.args[0], "target", None) == "fc.weight"]
    assert len(views) == 1 and len(views[0].users) == 3
    assert [name for name, _ in gm.named_parameters()] == ["fc.weight", "fc.bias"]
    _close(gm, module, example)


def test_a_linear_of_static_input_is_left_for_constant_folding():
    """Swin v2's position-bias MLP runs on a coordinates table: no input reaches it, so it stays
    a linear (coremltools folds a linear, not a conv, into a constant) and says why."""
    class StaticMlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("coords", torch.randn(15, 2))
            self.mlp, self.fc = nn.Linear(2, 4), nn.Linear(8, 8)

        def forward(self, x):
            bias = self.mlp(self.coords).sum()
            return self.fc(x) + bias

    module, example = StaticMlp().eval(), (torch.randn(2, 5, 8),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 1 and count(gm, "linear") == 1
    assert [d.reason for d in result.declined if d.rule == "linear_to_conv"][0].startswith("its input is computed")
    _close(gm, module, example)


def test_rank2_addmm_becomes_BC11_conv():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(16, 3))
            self.bias = nn.Parameter(torch.randn(3))

        def forward(self, x_BC):
            return torch.addmm(self.bias, x_BC, self.weight)

    module, example = Head().eval(), (torch.randn(4, 16),)
    gm, result = _run(module, example)
    assert result.counts["addmm_to_conv"] == 1
    assert count(gm, "addmm") == 0 and count(gm, "conv2d") == 1
    _close(gm, module, example)


def test_residual_add_and_token_select_stay_channels_first():
    """x ─ linear ─ (+x) ─ [:, 0] ─ linear: the select becomes a slice on the S axis."""
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj, self.cls = nn.Linear(32, 32), nn.Linear(32, 5)

        def forward(self, x):
            h = self.proj(x) * 0.5 + self.proj(x).relu()
            return self.cls(h[:, 0])

    module, example = Head().eval(), (torch.randn(2, 9, 32),)
    gm, result = _run(module, example)
    assert result.counts["sink_select"] == 1
    assert result.counts["sink_binary"] >= 1
    assert count(gm, "select") == 0
    _close(gm, module, example)


def test_mlp_block_numbers_and_idempotence():
    module = MlpBlock().eval()
    example = (torch.randn(2, 10, 48),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 4
    assert count(gm, "linear") == 0
    _close(gm, module, example)
    again = layout(gm)
    assert not again.changed, again


def test_rank5_linear_is_declined_with_its_reason():
    module, example = nn.Linear(6, 3).eval(), (torch.randn(2, 2, 2, 2, 6),)
    gm, result = _run(module, example)
    assert count(gm, "linear") == 1
    assert not result.changed
    (declined,) = result.declined
    assert declined.rule == "linear_to_conv"
    assert "rank 5" in declined.reason


def test_parameters_keep_names_and_shapes():
    module, example = Chain(12, 20, 6).eval(), (torch.randn(1, 3, 12),)
    gm, _ = _run(module, example)
    assert {k: v.shape for k, v in gm.state_dict().items()} == {k: v.shape for k, v in module.state_dict().items()}


def test_created_nodes_carry_provenance():
    module, example = Chain(12, 20, 6).eval(), (torch.randn(1, 3, 12),)
    gm, _ = _run(module, example)
    convs = [n for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert all(n.meta["ane_rule"] == "linear_to_conv" for n in convs)
    assert any(n.meta.get("ane_origin") for n in gm.graph.nodes)


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), seq=st.integers(1, 9), c_in=st.integers(1, 13),
       hidden=st.integers(1, 17), c_out=st.integers(1, 7))
def test_property_linear_chains_of_any_size_are_equivalent(batch, seq, c_in, hidden, c_out):
    module, example = Chain(c_in, hidden, c_out).eval(), (torch.randn(batch, seq, c_in),)
    gm, result = _run(module, example)
    assert count(gm, "linear") == 0
    _close(gm, module, example)


def test_a_projection_wider_than_the_ane_limit_in_its_input_stays_a_linear_with_its_reason():
    """A projection reading 16385 channels: no ANE conv holds it, and no split of its outputs helps."""
    module, example = nn.Sequential(nn.Linear(8, 16385), nn.GELU(), nn.Linear(16385, 8)).eval(), (torch.randn(1, 3, 8),)
    gm, result = _run(module, example)
    assert result.counts["linear_to_conv"] == 1 and count(gm, "linear") == 1
    assert any("has a dimension > 16384" in d.reason for d in result.declined)
    _close(gm, module, example)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_the_checker_inverts_a_layout_with_the_steps_the_pass_emits(r):
    """One convention: channels_last (the equivalence checker's inverse) applies FROM_STEPS, the
    steps emit_from writes into the graph; a round trip through the emitted form is the identity."""
    from ane_rewrite.passes._layouts import channels_last

    x = torch.randn(*(2, 5, 7, 3)[:r])
    forward = {2: lambda t: t[:, :, None, None], 3: lambda t: t.permute(0, 2, 1)[:, :, None, :],
               4: lambda t: t.permute(0, 3, 1, 2)}[r]
    assert torch.equal(channels_last(forward(x), r), x)

