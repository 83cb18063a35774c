"""Example inputs for Hugging Face models whose inputs the config alone does not give:
NaFlex vision (Siglip2: patches, their mask and grid) and raw audio through a conv stem the
config does not describe (Moonshine: the samples read off its strided convolutions)."""
import torch
import transformers

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.frontend import models


def _moonshine():
    config = transformers.MoonshineConfig(hidden_size=64, intermediate_size=128, encoder_num_hidden_layers=1,
                                          decoder_num_hidden_layers=1, encoder_num_attention_heads=2,
                                          decoder_num_attention_heads=2, vocab_size=100)
    return transformers.MoonshineModel(config).eval()


def test_raw_audio_makes_exactly_the_frames_asked_for():
    model = _moonshine()
    example = models.example_inputs(model, seq_len=16)
    assert set(example) == {"input_values", "decoder_input_ids"}
    with torch.no_grad():
        out = model(**example)
    assert out.encoder_last_hidden_state.shape[1] == 16


def test_a_speech_encoder_decoder_is_rewritten_exported_and_executed(tmp_path):
    torch.manual_seed(0)
    model = _moonshine()
    fast = ane_rewrite.optimize(model, seq_len=16)
    example = fast.example_inputs
    assert ane_rewrite.verify(model, fast, example).psnr >= 60
    base = mil.summary(mil.program_ops(ane_rewrite.export(model, example, tmp_path / "b.mlpackage", progress=False)))
    path = ane_rewrite.export(fast, example, tmp_path / "n.mlpackage", progress=False)
    new = mil.summary(mil.program_ops(path))
    assert new["linear"] == 0 and new["max_rank"] <= 4 < base["max_rank"] and new["transpose"] <= base["transpose"]
    executed = ane_rewrite.verify(model, path, example)
    assert executed.ok and executed.psnr >= 60, executed


def test_naflex_vision_gets_patches_their_mask_and_grid():
    config = transformers.Siglip2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                              num_attention_heads=2, num_patches=16)
    model = transformers.Siglip2VisionModel(config).eval()
    example = models.example_inputs(model)
    assert example["pixel_values"].shape == (1, 16, 3 * 16 * 16)
    assert example["spatial_shapes"].tolist() == [[4, 4]] and example["pixel_attention_mask"].sum() == 16
    fast = ane_rewrite.optimize(model)
    report = ane_rewrite.verify(model, fast, example)
    assert report.ok and report.psnr >= 60, report
