"""Today's decoders and encoders (issue 12): rotary attention, RMSNorm, QK-norm, GQA, fused
projections — every attention lowered, no linear and no RMSNorm chain left, equivalent."""
import functools

import pytest
import torch

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.frontend import models
from tests.decoders import FAMILIES, build
from ane_rewrite.rewrite.graph import aten, is_op
from tests.helpers import count

LAYERS = 2


@functools.lru_cache(maxsize=None)
def _optimized(name: str):
    """The model, its example inputs and its rewrite, built once for the tests of a family."""
    model = build(name)
    example = models.example_inputs(model, seq_len=32)
    return model, example, ane_rewrite.optimize(model, example, lower_every_attention=True)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_attention_and_norm_is_lowered_and_the_model_is_equivalent(name):
    model, example, fast = _optimized(name)
    counts = fast.ane_report.counts()
    _, _, norms, heads = FAMILIES[name]
    assert counts["attention"].get("sdpa_per_head", 0) == LAYERS
    assert counts["rms_norm"].get("rms_as_layer_norm", 0) == norms
    for op in ("linear", "scaled_dot_product_attention"):
        assert count(fast, op) == 0, op
    assert count(fast, "_softmax") == LAYERS * heads
    rms = [n for n in fast.graph.nodes if is_op(n, aten.mean) and is_op(n.args[0], aten.pow)]  # mean(x²)
    assert rms == []
    products = [n for n in fast.graph.nodes if is_op(n, aten.matmul, aten.bmm)
                and all(a.op != "get_attr" for a in n.all_input_nodes)]  # a tied LM head reads its weight
    assert products == []
    report = ane_rewrite.verify(model, fast, example, draws=2)
    assert report.ok and report.psnr >= 60 and report.max_rel <= 1e-4, report


@pytest.mark.parametrize("name", list(FAMILIES))
def test_export_has_per_head_softmaxes_layer_norms_and_rank_4(name, tmp_path):
    model, example, fast = _optimized(name)
    ops = mil.program_ops(ane_rewrite.export(fast, example, tmp_path / "m.mlpackage", progress=False))
    s, mix = mil.summary(ops), mil.op_mix(ops)
    _, _, norms, heads = FAMILIES[name]
    assert s["linear"] == 0 and s["max_rank"] <= 4 and s["softmax"] >= LAYERS * heads
    assert mix["rsqrt"] == 0  # every norm is one MIL layer_norm: no rsqrt chain left
    if not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules()):
        assert mix["layer_norm"] == norms and mix["pow"] == 0  # (LayerNorm models: some share one)
    assert s["gather"] == 1  # the embedding lookup: no mask is built with a gather
    batched = [op for op in ops if op.type == "matmul" and op.outputs[0].rank == 4]
    assert batched == []
    executed = ane_rewrite.verify(model, tmp_path / "m.mlpackage", example, draws=1, source=fast)  # fp32
    assert executed.ok and executed.psnr >= 60, executed


def test_a_rope_vit_rotates_all_but_its_prefix_token():
    """timm EVA-02: 2-D (axial) rope on every patch token, none on the class token (a slice of
    the sequence), interleaved pairs, fused qkv with an in-graph bias."""
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=112, depth=2).eval()
    example = models.example_inputs(model)
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
    counts = fast.ane_report.counts()
    assert counts["rotary"]["rotary_on_channels"] == 2 * LAYERS and counts["rotary"]["rejoin_slices"] == 2 * LAYERS
    assert counts["attention"]["sdpa_per_head"] == LAYERS
    assert count(fast, "linear") == 0 and count(fast, "scaled_dot_product_attention") == 0
    report = ane_rewrite.verify(model, fast, example, draws=2)
    assert report.ok and report.psnr >= 60 and report.max_rel <= 1e-4, report


def test_a_bf16_decoder_is_lowered_with_masks_in_its_dtype():
    """Masks and row guards are built in the logits' dtype (a float32 mask would promote the
    per-head softmax output and fail the bf16 product with v). The fp32 bar of verify does not
    apply to bf16 rounding; the rewrite stays at bf16 noise (about 58 dB here)."""
    model = build("llama").to(torch.bfloat16)
    example = models.example_inputs(model, seq_len=32)
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
    assert fast.ane_report.counts()["attention"]["sdpa_per_head"] == LAYERS
    per_head = [n for n in fast.graph.nodes if is_op(n, aten._softmax, aten.einsum)]
    assert per_head and {n.meta["val"].dtype for n in per_head} == {torch.bfloat16}
    assert ane_rewrite.verify(model, fast, example, draws=2).psnr >= 45
