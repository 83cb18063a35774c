"""passes/batched_heads.py: an attention left batched (its per-head form would not pay) reads its
heads as they lie in the channels-first projections — tiled, or interleaved at equal steps as
LeViT's fused q, k, v — so the export has no transpose of its own; what the pass cannot read is
declined with the reason and left batched."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml.mil import op_mix, program_ops
from ane_rewrite.passes import batched_heads
from ane_rewrite.passes._attention_cost import COST_REASON
from ane_rewrite.rewrite.rules import COST
from ane_rewrite.rewrite.graph import aten, is_op, rank
from tests.helpers import count


B, S, C, H = 2, 12, 32, 4
D = C // H


class Fused(nn.Module):
    """One fused qkv projection; ``layout`` picks how its channels are split into heads."""

    def __init__(self, layout: str, sdpa: bool = False, bias: bool = False):
        super().__init__()
        self.layout, self.sdpa = layout, sdpa
        self.qkv, self.o = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.bias = nn.Parameter(torch.randn(H, S, S)) if bias else None

    def forward(self, x, mask=None):
        y = self.qkv(x)
        if self.layout == "tiled":  # timm's ViT: (B, S, 3, H, d)
            q, k, v = y.reshape(B, S, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        else:  # LeViT: per head its q, k and v channels, then the next head's
            q, k, v = y.view(B, S, H, 3 * D).permute(0, 2, 1, 3).split([D, D, D], dim=3)
        if self.sdpa:
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            logits = (q @ k.transpose(-2, -1)) * D ** -0.5
            if self.bias is not None:
                logits = logits + self.bias
            out = logits.softmax(dim=-1) @ v
        return self.o(out.transpose(1, 2).reshape(B, S, C))


def _transposes(model, example, tmp_path, name) -> int:
    ml = ane_rewrite.export(model, example, tmp_path / f"{name}.mlpackage", progress=False)
    return op_mix(program_ops(ml))["transpose"]


@pytest.mark.parametrize("layout,sdpa,bias", [("tiled", False, False), ("interleaved", False, True),
                                              ("tiled", True, False)])
def test_a_batched_attention_reads_its_heads_as_they_lie(layout, sdpa, bias, tmp_path):
    module = nn.Sequential(Fused(layout, sdpa, bias), Fused(layout, sdpa, bias)).eval()
    example = (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    report = fast.ane_report
    assert any(d.kind == COST and d.reason.startswith(COST_REASON) for r in report.results for d in r.declined)
    counts = report.counts()["batched_heads"]
    assert counts.get("batched_sdpa" if sdpa else "batched_logits") == 2, counts
    assert count(fast, "linear") == 0 and count(fast, "scaled_dot_product_attention") == 0
    # every permute left is the swap of a matmul operand's last two axes, which the export folds
    for n in fast.graph.nodes:
        if is_op(n, aten.permute) and list(n.args[1]) != [0, 2, 1]:  # (B, S, C) in and out
            assert list(n.args[1]) == [0, 1, 3, 2] and all(is_op(u, aten.matmul) for u in n.users), n
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
    # the tokens' conversions in and out, where two heads transposes a block were captured
    assert _transposes(fast, example, tmp_path, "new") == 2 and _transposes(module, example, tmp_path, "base") == 4
    assert not batched_heads(fast).counts  # a second run finds nothing left to read


def test_masks_are_added_to_the_logits_a_boolean_one_as_torch_reads_it():
    """An additive mask is added as it is; a boolean one becomes 0 / −1e4 (one cast, float ops
    after it) and a query left with no key gets zeros, as torch's sdpa gives it."""
    module = Fused("tiled", sdpa=True).eval()
    x = torch.randn(B, S, C)
    additive = torch.zeros(B, 1, S, S).masked_fill(torch.rand(B, 1, S, S) > 0.7, -1e4)
    boolean = torch.rand(B, 1, S, S) > 0.3
    boolean[0, 0, 3] = False  # a query with no key
    for mask in (additive, boolean):
        fast = ane_rewrite.optimize(module, (x, mask))
        assert fast.ane_report.counts()["batched_heads"].get("batched_sdpa") == 1
        assert count(fast, "scaled_dot_product_attention") == 0
        got, want = fast(x, mask), module(x, mask)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert ane_rewrite.verify(module, fast, (x, boolean), draws=2).ok


class Grouped(nn.Module):
    """Two key/value heads for four query heads, spelled as models spell it."""

    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.q, self.kv, self.o = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def forward(self, x):
        q = self.q(x).view(B, S, H, D).transpose(1, 2)
        k, v = self.kv(x).view(B, S, 2, H // 2, D).permute(2, 0, 3, 1, 4).unbind(0)
        if self.form == "enable_gqa":
            out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        elif self.form == "repeat_kv":  # Hugging Face: expand, then reshape
            k, v = (t[:, :, None].expand(B, H // 2, 2, S, D).reshape(B, H, S, D) for t in (k, v))
            out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            repeat = (lambda t: t[:, None].expand(B, 2, H // 2, S, D).reshape(B, H, S, D)) \
                if self.form == "tiled" else (lambda t: t.repeat_interleave(2, dim=1))
            k, v = repeat(k), repeat(v)
            out = (q @ k.transpose(-2, -1) * D ** -0.5).softmax(-1) @ v
        return self.o(out.transpose(1, 2).reshape(B, S, C))


@pytest.mark.parametrize("form", ["enable_gqa", "repeat_kv", "repeat_interleave"])
def test_grouped_query_heads_broadcast_each_key_head_over_its_group(form, tmp_path):
    """(B·G, rep, Q, d)ᵀ · (B·G, 1, d, K): the key and value heads are not repeated; a causal
    sdpa gets a constant additive mask."""
    module, example = Grouped(form).eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    counts = fast.ane_report.counts()["batched_heads"]
    assert counts.get("batched_sdpa" if form != "repeat_interleave" else "batched_logits") == 1, counts
    assert count(fast, "scaled_dot_product_attention") == 0 and count(fast, "expand") == 0
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
    if form == "enable_gqa":  # coremltools' sdpa converter does not take enable_gqa: the rewrite converts
        with pytest.raises(ane_rewrite.ExportError, match="Incompatible dim"):
            _transposes(module, example, tmp_path, "base")
        assert _transposes(fast, example, tmp_path, "new") <= 2
    else:
        assert _transposes(fast, example, tmp_path, "new") <= _transposes(module, example, tmp_path, "base")
    assert not batched_heads(fast).counts


def test_key_heads_that_are_not_groups_of_the_query_heads_are_declined():
    module, example = Grouped("tiled").eval(), (torch.randn(B, S, C),)  # heads 0, 1, 0, 1
    fast = ane_rewrite.optimize(module, example)
    reasons = [d.reason for r in fast.ane_report.results if r.name == "batched_heads" for d in r.declined]
    assert any("not groups" in why for why in reasons), reasons
    assert ane_rewrite.verify(module, fast, example, draws=2).ok


def test_cosine_attention_left_batched_normalises_its_heads_as_they_lie():
    """Swin v2's scaled cosine attention: F.normalize of q and k over each head's channels,
    a learned per-head logit scale and a bias table, kept batched — the norms over axis 2."""
    from tests.passes.test_logit_steps import B as B2, C as C2, S as S2, Steps

    module, example = Steps("cosine").eval(), (torch.randn(B2, S2, C2),)
    fast = ane_rewrite.optimize(module, example)
    counts = fast.ane_report.counts()["batched_heads"]
    assert counts.get("batched_logits") == 1 and counts.get("batched_values") == 1, counts
    assert count(fast, "linalg_vector_norm") == 0 and count(fast, "linear") == 0
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict


def test_a_low_precision_model_gets_its_mask_in_its_own_dtype():
    """A bf16 model's boolean mask and causal part are built in bf16, so the logits stay bf16."""
    torch.manual_seed(0)
    module = Fused("tiled", sdpa=True).eval().to(torch.bfloat16)
    x, mask = torch.randn(B, S, C, dtype=torch.bfloat16), torch.rand(B, 1, S, S) > 0.3
    fast = ane_rewrite.optimize(module, (x, mask))
    assert fast.ane_report.counts()["batched_heads"].get("batched_sdpa") == 1
    assert not fast.ane_report.rolled_back
    assert ane_rewrite.verify(module, fast, (x, mask), draws=2).psnr >= 55  # bf16 rounding alone: ~58 dB


class SharedQuery(nn.Module):
    """GCViT's global attention: one query map for every window, expanded over them; k, v per window."""

    def __init__(self):
        super().__init__()
        self.q, self.kv, self.o = nn.Linear(C, C), nn.Linear(C, 2 * C), nn.Linear(C, C)

    def forward(self, x, g):  # x (W, S, C) windows, g (1, S, C) the global context
        w = x.shape[0]
        k, v = self.kv(x).reshape(w, S, 2, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.q(g).unsqueeze(1).expand(1, w, S, C).reshape(w, S, H, D).permute(0, 2, 1, 3)
        out = ((q * D ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.o(out.transpose(1, 2).reshape(w, S, C))


def test_a_query_shared_by_every_window_is_read_once_and_broadcast():
    module = SharedQuery().eval()
    example = (torch.randn(4, S, C), torch.randn(1, S, C))
    fast = ane_rewrite.optimize(module, example)
    counts = fast.ane_report.counts()["batched_heads"]
    assert counts.get("batched_logits") == 1 and counts.get("batched_values") == 1, counts
    assert count(fast, "linear") == 0 and count(fast, "expand") == 0  # read, not repeated per window
    assert not any((rank(n) or 0) > 4 for n in fast.graph.nodes)
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
