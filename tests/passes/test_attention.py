"""passes/attention.py: every attention form → per-head einsums on (B, C, 1, S).

    conv ─ heads ─┐
    conv ─ heads ─┼─ sdpa / matmul·softmax·matmul ─ merge ─ conv
    conv ─ heads ─┘
        →  conv ─ split ─ einsum ─ (+mask) ─ softmax₁ ─ einsum ─ cat ─ conv   (per head)
"""
import pytest
import torch

import ane_rewrite
from ane_rewrite.rewrite.graph import aten
from ane_rewrite import passes
from ane_rewrite.passes import PassOptions, make_attention_pass
from tests import zoo, zoo_vision
from tests.helpers import count

EVERY_ATTENTION = make_attention_pass(PassOptions(lower_every_attention=True))  # toy sizes: lower them all


def _activations(gm) -> list:
    """Nodes computed from a projection (a mask input is (…, S, S) by nature and is not one)."""
    found = set()
    for n in gm.graph.nodes:
        if n.target == aten.conv2d.default or any(a in found for a in n.all_input_nodes):
            found.add(n)
    return [n for n in gm.graph.nodes if n in found and isinstance(n.meta.get("val"), torch.Tensor)]


def _batched_logits(gm, seq: int) -> list[str]:
    """Activations holding a (…, S, S) tensor: the batched attention the lowering removes."""
    return [n.name for n in _activations(gm)
            if n.meta["val"].dim() >= 3 and n.meta["val"].shape[-1] == seq and n.meta["val"].shape[-2] == seq]


def _activation_ranks(gm) -> list[int]:
    return [n.meta["val"].dim() for n in _activations(gm)]


def _assert_lowered(fast, heads_total: int, seq: int):
    assert count(fast, "scaled_dot_product_attention") == 0
    products = [n for n in fast.graph.nodes if n.target in (aten.matmul.default, aten.bmm.default)
                and all(a.op != "get_attr" for a in n.all_input_nodes)]  # a tied LM head reads a weight
    assert products == []
    assert count(fast, "einsum") == 2 * heads_total
    softmaxes = [n for n in fast.graph.nodes if n.target in (aten._softmax.default, aten.softmax.int)]
    assert len(softmaxes) == heads_total and all(n.args[1] == 1 for n in softmaxes)
    assert _batched_logits(fast, seq) == []


HAND_WRITTEN = {
    "sdpa": dict(form="sdpa"),
    "sdpa_causal": dict(form="sdpa", causal=True),
    "sdpa_explicit_scale": dict(form="sdpa", scale=0.3),
    "eager_scaled_logits": dict(form="eager"),
    "eager_scaled_q": dict(form="eager_q_scaled"),
    "gqa_enable_gqa": dict(form="gqa", kv_heads=2, causal=True),
    "gqa_repeat_kv": dict(form="repeat_kv", kv_heads=2),
}


@pytest.mark.parametrize("name", list(HAND_WRITTEN))
def test_hand_written_forms(name):
    module = zoo.SelfAttention(c=32, heads=4, **HAND_WRITTEN[name]).eval()
    example = (torch.randn(2, 9, 32),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    _assert_lowered(fast, heads_total=4, seq=9)
    report = ane_rewrite.verify(module, fast, example)
    assert report.ok, report
    assert not EVERY_ATTENTION(fast).changed


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels-last heads", "(B, H, d, HW) heads"])
def test_attention_over_the_pixels_of_a_feature_map(channels_last):
    """Heads of a (B, C, H, W) conv output with the H·W positions as the sequence are read as
    (B, C, 1, H·W): one reshape of the qkv map, then the same per-head einsums."""
    module = zoo_vision.PixelAttention(channels_last=channels_last).eval()
    example = (torch.randn(2, 32, 4, 6),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    _assert_lowered(fast, heads_total=4, seq=24)
    assert ane_rewrite.verify(module, fast, example).ok
    assert max(_activation_ranks(fast)) == 4


@pytest.mark.parametrize("need_weights", [True, False], ids=["3-D eager path", "sdpa path"])
def test_nn_multihead_attention(need_weights):
    module, example = zoo.MhaBlock(need_weights=need_weights).eval(), (torch.randn(2, 7, 32),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    _assert_lowered(fast, heads_total=4, seq=7)
    assert ane_rewrite.verify(module, fast, example).ok


@pytest.mark.parametrize("name,factory,layers,heads", [
    ("distilbert", zoo.distilbert, 2, 4),
    ("bert", zoo.bert, 2, 4),
    ("gpt2_causal", zoo.gpt2, 2, 4),
    ("clip_text_causal", zoo.clip_text, 2, 4),
])
def test_hugging_face_models_with_real_padding(name, factory, layers, heads):
    model, _ = factory()
    example = zoo.padded(model, seq=12)
    assert int(example["attention_mask"].min()) == 0
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
    _assert_lowered(fast, heads_total=layers * heads, seq=12)
    # the mask builder (gathers, logical ops) is gone; masks are finite and fp16-safe
    for op in ("index", "bitwise_and", "logical_and", "__and__", "new_ones"):
        assert count(fast, op) <= (1 if name == "clip_text_causal" and op == "index" else 0), op
    for name_, buf in fast.named_buffers():
        if name_.startswith("_ane_mask"):
            assert torch.isfinite(buf).all() and float(buf.min()) >= -1e4
    report = ane_rewrite.verify(model, fast, example)
    assert report.ok, report


@pytest.mark.parametrize("attn_impl", ["eager", "sdpa"])
def test_hugging_face_attention_implementations(attn_impl):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                     vocab_size=1000, max_position_embeddings=64)
    cfg._attn_implementation = attn_impl
    model = zoo.randomize_norms(BertModel(cfg).eval())
    example = zoo.padded(model, seq=10)
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
    counts = fast.ane_report.counts()["attention"]
    assert counts["sdpa_per_head"] == 1
    assert counts.get("eager_to_sdpa", 0) == (1 if attn_impl == "eager" else 0)
    _assert_lowered(fast, heads_total=4, seq=10)
    assert ane_rewrite.verify(model, fast, example).ok


def test_vit_tiny():
    model, _ = zoo.vit_tiny()
    fast = ane_rewrite.optimize(model, lower_every_attention=True)
    _assert_lowered(fast, heads_total=12 * 3, seq=197)
    assert ane_rewrite.verify(model, fast, fast.example_inputs, draws=2).ok


@pytest.mark.parametrize("form", ["eager", "eager_mask_then_scale", "sdpa"])
def test_a_float_bias_mask_inside_or_outside_the_scale(form):
    """A float mask that is not padding (a learned bias) is kept as the model computes it,
    scaled with the logits when it is added inside the scale."""
    class Biased(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = zoo.SelfAttention(c=16, heads=2, form=form)

        def forward(self, x, bias):
            return self.attn(x, bias)

    module = Biased().eval()
    example = (torch.randn(2, 6, 16), torch.randn(2, 1, 6, 6))
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    _assert_lowered(fast, heads_total=2, seq=6)
    report = ane_rewrite.verify(module, fast, example)
    assert report.ok, report


def test_a_fully_masked_query_gets_zeros_as_in_torch():
    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = zoo.SelfAttention(c=16, heads=2)

        def forward(self, x, keep):
            return self.attn(x, keep[:, None, :, :])

    keep = torch.ones(1, 5, 5, dtype=torch.bool)
    keep[0, 2] = False  # query 2 may attend to nothing
    module, example = Masked().eval(), (torch.randn(1, 5, 16), keep)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert count(fast, "einsum") == 4
    with torch.no_grad():
        torch.testing.assert_close(fast(*example), module(*example), rtol=1e-5, atol=1e-6)


def test_attention_on_raw_inputs_is_declined_with_reason():
    class Raw(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    example = tuple(torch.randn(1, 2, 5, 4) for _ in range(3))
    fast = ane_rewrite.optimize(Raw(), example, lower_every_attention=True)
    assert count(fast, "scaled_dot_product_attention") == 1
    declined = [d for r in fast.ane_report.results for d in r.declined if d.rule == "sdpa_per_head"]
    assert declined and "not a head split of the channel axis" in declined[0].reason
    assert ane_rewrite.verify(Raw(), fast, example).ok


def test_attention_dropout_is_declined():
    class WithDropout(zoo.SelfAttention):
        def forward(self, x, mask=None):
            b, s, c = x.shape
            q, k, v = (p(x).view(b, s, self.heads, self.d).transpose(1, 2) for p in (self.q, self.k, self.v))
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
            return self.o(out.transpose(1, 2).reshape(b, s, c))

    fast = ane_rewrite.optimize(WithDropout(c=16, heads=2).eval(), (torch.randn(1, 4, 16),), lower_every_attention=True)
    assert count(fast, "scaled_dot_product_attention") == 1
    assert any("dropout_p=0.5" in d.reason for r in fast.ane_report.results for d in r.declined)


def test_the_whole_pipeline_is_a_fixpoint_after_lowering():
    model, _ = zoo.gpt2()
    fast = ane_rewrite.optimize(model, zoo.padded(model), lower_every_attention=True)
    assert not any(r.changed for r in passes.default_pipeline(lower_every_attention=True)(fast).results)


def test_swin_window_attention_with_bias_and_shift_mask():
    """Swin adds a relative-position bias and, in shifted blocks, a per-window mask inside a
    (B, nW, H, N, N) view of the logits: both become one additive mask of the lowered form."""
    import timm

    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                              embed_dim=32, depths=(2, 2), num_heads=(2, 4)).eval()
    fast = ane_rewrite.optimize(model, lower_every_attention=True)
    counts = fast.ane_report.counts()["attention"]
    assert counts["eager_to_sdpa"] == 4 and counts["sdpa_per_head"] == 4
    assert counts["regrouped_mask_add"] >= 2  # the shifted blocks
    products = [n for n in fast.graph.nodes if n.target in (aten.matmul.default, aten.bmm.default)
                and all(a.op != "get_attr" for a in n.all_input_nodes)]  # a tied LM head reads a weight
    assert products == []
    assert max(_activation_ranks(fast)) <= 4  # (the constant shift mask folds away in the export)
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=2)
    assert report.ok, report


def test_a_softmax_no_rule_lowers_is_reported_by_name():
    """An attention-like product this pass does not know (here a softmax over the queries, not
    the keys) is not silently skipped: the softmax is named with what was expected."""
    class QueryAxis(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = (torch.nn.Linear(16, 16) for _ in range(3))

        def forward(self, x):
            q, k, v = (p(x).view(1, 6, 2, 8).transpose(1, 2) for p in (self.q, self.k, self.v))
            w = torch.softmax(q @ k.transpose(-1, -2), dim=2)
            return (w @ v).transpose(1, 2).reshape(1, 6, 16)

    module, example = QueryAxis().eval(), (torch.randn(1, 6, 16),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    left = [d for r in fast.ane_report.results for d in r.declined if d.rule == "left_softmax"]
    assert len(left) == 1 and "is left as it is" in left[0].reason and left[0].node in left[0].reason
    assert ane_rewrite.verify(module, fast, example).ok
