"""Vision models end to end: optimize, verify, export; the exported programs have no tensor of
rank 5 or more, no `linear`, no `gather`, and every attention lowered per head."""
import ane_rewrite
from ane_rewrite.coreml import mil
from tests.zoo_vision import moat_block


def _export_summary(model, example, reference=None) -> dict:
    """The exported program's summary; the package executed (fp32) against ``reference``."""
    ml = ane_rewrite.export(model, example)
    if reference is not None:
        executed = ane_rewrite.verify(reference, ml, example, draws=1, source=model)
        assert executed.ok and executed.psnr >= 60, executed
    return mil.summary(mil.program_ops(ml))


def test_moat_block_mbconv_stays_nchw_and_window_attention_is_lowered():
    model, example = moat_block()
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
    counts = fast.ane_report.counts()
    assert counts["attention"]["sdpa_per_head"] == 1 and counts["windows"]["low_rank_permute"] >= 2
    report = ane_rewrite.verify(model, fast, example)
    assert report.ok, report
    base = _export_summary(model, example)
    new = _export_summary(fast, example, model)
    assert base["rank5"] > 0 and base["linear"] == 2  # what the block is written as
    assert new["rank5"] == 0 and new["max_rank"] <= 4 and new["linear"] == 0
    assert new["gather"] == 0  # the bias table lookup by a constant index is a constant
    assert new["softmax"] == 2 and new["einsum"] == 4  # 2 heads
    assert new["conv_4d"] == 5  # the MBConv's 3 convs stay NCHW convs; qkv and proj are 1×1 convs


def test_maxvit_block_and_grid_attention_are_lowered():
    """MaxViT's attention reads heads of a (B·windows, C, h, w) map after a 1×1 conv."""
    import timm

    model = timm.create_model("maxvit_pico_rw_256", pretrained=False, img_size=64, depths=(1, 1, 1, 1),
                              embed_dim=(32, 64, 64, 64)).eval()
    fast = ane_rewrite.optimize(model, lower_every_attention=True)
    assert fast.ane_report.counts()["attention"]["sdpa_per_head"] == 8  # block + grid per stage
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=1)
    assert report.ok, report
    s = _export_summary(fast, fast.example_inputs, model)
    assert s["rank5"] == 0 and s["max_rank"] <= 4 and s["linear"] == 0 and s["gather"] == 0
    assert s["einsum"] == 2 * s["softmax"]
