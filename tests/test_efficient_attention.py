"""Attention in other shapes, small timm configs end to end (issue 30): cross-covariance attention
(XCiT, EdgeNeXt: softmax over each head's channels) reads its heads as they lie and its
projections are convs; MobileViT v2's patch unfold and fold are convolutions. Each: equivalent,
exported and executed (fp32 ≥ 60 dB), rank ≤ 4, no linear, no more transposes than as is."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.coreml import mil

MODELS = {
    "xcit": ("xcit_nano_12_p16_224", dict(img_size=64, depth=2, cls_attn_layers=1), "channel_values"),
    "edgenext": ("edgenext_xx_small", dict(), "channel_values"),
    "mobilevitv2": ("mobilevitv2_050", dict(), "patches_as_conv"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_other_attention_shapes_are_rewritten_and_executed(name, tmp_path):
    import timm

    arch, kwargs, rule = MODELS[name]
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kwargs).eval()
    example = (torch.randn(1, 3, 64, 64),)
    fast = ane_rewrite.optimize(model, example)
    assert any(rule in counts for counts in fast.ane_report.counts().values())
    verdict = ane_rewrite.verify(model, fast, example, draws=1)
    assert verdict.ok and verdict.psnr >= 60, verdict
    base = mil.summary(mil.program_ops(ane_rewrite.export(model, example, tmp_path / "base.mlpackage",
                                                          progress=False)))
    ml = ane_rewrite.export(fast, example, tmp_path / "fast.mlpackage", progress=False)
    new = mil.summary(mil.program_ops(ml))
    assert new["max_rank"] <= 4 and new["linear"] == 0, new
    assert new["transpose"] <= base["transpose"], (base, new)
    executed = ane_rewrite.verify(model, ml, example, draws=1, source=fast)
    assert executed.ok and executed.psnr >= 60, executed
