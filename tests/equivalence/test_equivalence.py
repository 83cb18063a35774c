"""Acceptance: the rewritten models compute the same function (PSNR ≥ 60 dB, rel err ≤ 1e-4)
and no linear is left, for each model family the spine covers."""
import pytest

import ane_rewrite
from ane_rewrite import passes
from tests import zoo
from tests.helpers import count

CASES = {
    "distilbert_sst2": (zoo.distilbert, 0),
    "bert": (zoo.bert, 0),
    "gpt2_lm_head": (zoo.gpt2, 0),
    "vit_tiny_patch16_224": (zoo.vit_tiny, 0),
    "convnext_atto": (zoo.convnext_atto, 0),
    "convnext_atto_channels_last_mlp": (lambda: zoo.convnext_atto(conv_mlp=False), 0),
    "mlp_block": (zoo.mlp_block, 0),
}


@pytest.mark.parametrize("every_attention", [False, True], ids=["default", "every_attention"])
@pytest.mark.parametrize("name", list(CASES))
def test_equivalent_and_fully_converted(name, every_attention):
    """The test zoo in the configuration users get and with every attention lowered: equivalent,
    converted, and a fixpoint — the whole default pipeline run on its own output changes nothing."""
    factory, linears_left = CASES[name]
    model, example = factory()
    fast = ane_rewrite.optimize(model, example, seq_len=24, batch=2, lower_every_attention=every_attention)
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=3)
    assert report.ok, report
    assert report.psnr >= 60 and report.max_rel <= 1e-4
    assert count(fast, "linear") + count(fast, "addmm") == linears_left
    assert count(fast, "conv2d") > 0
    again = passes.default_pipeline(lower_every_attention=every_attention)(fast)
    assert not any(r.changed for r in again.results), again


def test_channels_last_convnext_mlp_has_no_permute_per_block():
    model, _ = zoo.convnext_atto(conv_mlp=False)
    fast = ane_rewrite.optimize(model)
    assert count(fast, "permute") == 0
    assert fast.ane_report.counts()["layout"]["linear_to_conv"] == 2 * sum([2, 2, 6, 2]) + 1


def test_a_t5_encoder_with_its_bucketed_position_bias_is_equivalent():
    """T5: no 1/√d scale, a position bias added with the padding mask in one float tensor. The
    mask is kept with its values (not rebuilt as a keep pattern); padded draws included."""
    import torch
    import transformers

    from ane_rewrite.frontend import models

    config = transformers.T5Config(num_layers=2, d_model=128, d_kv=32, num_heads=4, d_ff=256, vocab_size=1000)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.T5EncoderModel(config).eval()
    example = models.example_inputs(model, seq_len=32)
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)  # 4 heads of 32: lowered only on request
    assert fast.ane_report.counts()["attention"]["sdpa_per_head"] == 2
    report = ane_rewrite.verify(model, fast, example, draws=3)
    assert report.ok and report.psnr >= 60 and report.max_rel <= 1e-4, report
