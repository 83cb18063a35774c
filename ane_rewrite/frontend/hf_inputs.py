"""Example inputs for Hugging Face models, by their main input: token ids and a mask, pixel
values (NaFlex patches with their mask and grid too), log-mel features (a speech encoder's full
window), raw audio (as many samples as make ``seq_len`` frames after the model's strided
convolutions), and the decoder's token ids for an encoder–decoder model."""
from __future__ import annotations

import math

import torch

from ..errors import InputError


def limit_of(config, *names):
    for name in names:
        value = getattr(config, name, None)
        if value:
            return value
    return None


def _token_ids(config, seq_len: int, batch: int, gen: torch.Generator, *limits: str) -> torch.Tensor:
    limit = limit_of(config, *limits)
    if limit is not None and seq_len > limit:
        raise InputError(f"seq_len {seq_len} exceeds the model's {limit} positions")
    return torch.randint(0, config.vocab_size, (batch, seq_len), generator=gen)


def hf_inputs(model, seq_len: int, batch: int, gen: torch.Generator) -> dict:
    config = model.config
    main = getattr(model, "main_input_name", "input_ids")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if main == "input_ids":
        inputs = {"input_ids": _token_ids(text, seq_len, batch, gen, "max_position_embeddings", "n_positions"),
                  "attention_mask": torch.ones(batch, seq_len, dtype=torch.long)}
    elif main == "pixel_values" and "spatial_shapes" in _forward_args(model) and getattr(config, "num_patches", None):
        # NaFlex (Siglip2): patches already cut, (B, N, C·p·p), with their mask and the grid they fill
        side = math.isqrt(config.num_patches)
        width = config.num_channels * config.patch_size ** 2
        inputs = {"pixel_values": torch.randn(batch, side * side, width, generator=gen),
                  "pixel_attention_mask": torch.ones(batch, side * side, dtype=torch.long),
                  "spatial_shapes": torch.tensor([[side, side]] * batch)}
    elif main == "pixel_values":
        size = getattr(config, "image_size", 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        channels = getattr(config, "num_channels", 3)
        inputs = {"pixel_values": torch.randn(batch, channels, *size, generator=gen)}
    elif main == "input_features" and getattr(config, "num_mel_bins", None):
        # a speech encoder (Whisper) takes its full window: two frames per encoder position
        frames = 2 * config.max_source_positions
        inputs = {"input_features": torch.randn(batch, config.num_mel_bins, frames, generator=gen)}
    elif main == "input_features" and getattr(config, "input_feat_per_channel", None):
        # Speech2Text: (B, frames, features); its convolutions halve the frames num_conv_layers times
        frames = seq_len * 2 ** config.num_conv_layers
        width = config.input_feat_per_channel * getattr(config, "input_channels", 1)
        inputs = {"input_features": torch.randn(batch, frames, width, generator=gen)}
    elif main == "input_values" and getattr(config, "conv_stride", None):
        # raw audio (Wav2Vec2, HuBERT): as many samples as make seq_len frames after the feature encoder
        samples = seq_len * math.prod(config.conv_stride)
        inputs = {"input_values": torch.randn(batch, samples, generator=gen)}
    elif main == "input_values" and (stem := _strided_convs(model)):
        # raw audio through a strided conv stem the config does not describe (Moonshine): the
        # samples that make exactly seq_len frames, read off the convolutions
        inputs = {"input_values": torch.randn(batch, _samples_for(stem, seq_len), generator=gen)}
    else:
        raise InputError(f"no example-input builder for a Hugging Face model whose main input is "
                         f"{main!r}; pass example_inputs=")
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in _forward_args(model):
        # a seq2seq model: the decoder's tokens too (as many as fit its positions)
        limit = limit_of(text, "max_target_positions", "max_position_embeddings")
        length = min(seq_len, limit) if limit else seq_len
        inputs["decoder_input_ids"] = _token_ids(text, length, batch, gen)
    return inputs


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _strided_convs(model) -> list[torch.nn.Conv1d]:
    """The 1-D convolutions of the model's stem that shorten the signal, in order."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv1d) and m.stride[0] > 1]


def _samples_for(stem: list[torch.nn.Conv1d], frames: int) -> int:
    """The input length the stem turns into ``frames`` outputs: its receptive field, then a stride per frame."""
    field, step = 1, 1
    for conv in reversed(stem):
        field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
    for conv in stem:
        step *= conv.stride[0]
    return field + (frames - 1) * step
