"""Diffusion models end to end (small configs of diffusers' classes, random weights): inputs
built by the adapter, dataclass outputs compared field by field, GroupNorm at rank 4, and the
rewritten package executed here."""
import diffusers  # a dev dependency: installed by the README's test command
import pytest
import torch

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.errors import InputError
from tests.helpers import count


def _unet():
    return diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)


def _vae():
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), latent_channels=4,
        norm_num_groups=8, sample_size=32)


@pytest.mark.parametrize("build", [_unet, _vae], ids=["unet", "vae"])
def test_a_diffusion_model_is_rewritten_exported_and_executed(build, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    fast = ane_rewrite.optimize(model, seq_len=8)  # the adapter builds latents, timestep, text states
    example = fast.example_inputs
    assert fast.ane_report.counts()["group_norm"]["group_norm_rank4"] >= 8
    report = ane_rewrite.verify(model, fast, example)  # outputs are diffusers' dataclasses
    assert report.ok and report.psnr >= 60, report
    base = mil.summary(mil.program_ops(ane_rewrite.export(model, example, tmp_path / "b.mlpackage", progress=False)))
    path = ane_rewrite.export(fast, example, tmp_path / "n.mlpackage", progress=False)
    new = mil.summary(mil.program_ops(path))
    assert base["rank5"] > 0 and new["max_rank"] <= 4 and new["rank5"] == 0
    assert new["linear"] == 0 and new["transpose"] < base["transpose"] and new["ops"] < base["ops"]
    executed = ane_rewrite.verify(model, path, example)
    assert executed.ok and executed.psnr >= 60, executed
    estimates = (ane_rewrite.analyze(tmp_path / "b.mlpackage").estimates, ane_rewrite.analyze(path).estimates)
    assert all(estimates[1][c]["latency_ms"] <= estimates[0][c]["latency_ms"] for c in estimates[0])


def test_the_adapter_builds_sdxl_conditioning_and_names_a_class_it_does_not_know():
    from ane_rewrite.frontend import models

    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 16).eval()
    example = models.example_inputs(unet, seq_len=5)
    assert example["encoder_hidden_states"].shape == (1, 5, 32)
    assert example["added_cond_kwargs"]["text_embeds"].shape == (1, 16)
    with torch.no_grad():
        assert unet(**example).sample.shape == (1, 4, 8, 8)

    class Other(diffusers.ModelMixin):
        pass

    with pytest.raises(InputError, match="Other"):
        models.example_inputs(Other())


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_the_joint_attention_transformers_get_inputs_and_come_back_equivalent(name):
    """SD3's and Flux's inputs from their configs; their joint attention read as one head split
    (``joint_heads``: every projection converted), and equivalent. They still come back with more
    transposes than as they are (their patch and modulation reshapes): not claimed faster."""
    torch.manual_seed(0)
    if name == "sd3":
        model = diffusers.SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=4,
            joint_attention_dim=32, caption_projection_dim=64, pooled_projection_dim=32, out_channels=4).eval()
    else:
        model = diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6)).eval()
    fast = ane_rewrite.optimize(model, seq_len=8)
    assert fast.ane_report.counts()["joint_heads"]["joint_heads"] >= 3
    assert count(fast, "linear") == 0
    report = ane_rewrite.verify(model, fast, fast.example_inputs)
    assert report.ok and report.psnr >= 60, report
