"""Example inputs for diffusers models, from their configs (the adapter's diffusion knowledge).

    UNet2DConditionModel    sample (B, C, H, W), timestep (B,), encoder_hidden_states (B, S, D)
                            [+ added_cond_kwargs text_embeds, time_ids: SDXL's "text_time"]
    UNet2DModel, VAEs       sample (B, C, H, W) [+ timestep for a UNet]
    SD3Transformer2DModel   hidden_states (B, C, H, W), encoder_hidden_states (B, S, D),
                            pooled_projections (B, P), timestep (B,)
    FluxTransformer2DModel  hidden_states (B, N, C) (packed 2×2 latents), encoder_hidden_states,
                            pooled_projections, timestep, img_ids (N, 3), txt_ids (S, 3) [, guidance]

H and W are the config's ``sample_size``; S is ``seq_len`` (77, a CLIP prompt, unless given).
Another diffusers class is an ``InputError`` naming it: pass ``example_inputs=``.
"""
from __future__ import annotations

import torch

from ..errors import InputError

TEXT_TOKENS = 77   # a CLIP prompt's length
TIMESTEP = 500     # a mid-schedule step of 1000
FLUX_LATENT = 16   # a 16×16 latent: 8×8 packed tokens


def is_diffusers(model) -> bool:
    return type(model).__module__.startswith("diffusers.")


def _side(config) -> tuple[int, int]:
    size = config.get("sample_size", 32) or 32
    return (size, size) if isinstance(size, int) else tuple(size)


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def diffusers_inputs(model, seq_len: int | None, batch: int, gen: torch.Generator) -> dict:
    config, name = model.config, type(model).__name__
    seq = seq_len or TEXT_TOKENS

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    timestep = torch.full((batch,), TIMESTEP, dtype=torch.long)
    if name == "UNet2DConditionModel":
        inputs = {"sample": randn(batch, config.in_channels, *_side(config)), "timestep": timestep,
                  "encoder_hidden_states": randn(batch, seq, _first(config.cross_attention_dim))}
        if config.get("addition_embed_type") == "text_time":
            text = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            inputs["added_cond_kwargs"] = {"text_embeds": randn(batch, text), "time_ids": randn(batch, 6)}
        return inputs
    if name == "UNet2DModel":
        return {"sample": randn(batch, config.in_channels, *_side(config)), "timestep": timestep}
    if name.startswith("Autoencoder"):
        return {"sample": randn(batch, config.in_channels, *_side(config))}
    if name == "SD3Transformer2DModel":
        return {"hidden_states": randn(batch, config.in_channels, *_side(config)),
                "encoder_hidden_states": randn(batch, seq, config.joint_attention_dim),
                "pooled_projections": randn(batch, config.pooled_projection_dim), "timestep": timestep}
    if name == "FluxTransformer2DModel":
        side = FLUX_LATENT // 2
        ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(side * 1.0), torch.arange(side * 1.0), indexing="ij"), -1)
        inputs = {"hidden_states": randn(batch, side * side, config.in_channels),
                  "encoder_hidden_states": randn(batch, seq, config.joint_attention_dim),
                  "pooled_projections": randn(batch, config.pooled_projection_dim),
                  "timestep": torch.full((batch,), TIMESTEP / 1000.0), "img_ids": ids.reshape(-1, 3).float(),
                  "txt_ids": torch.zeros(seq, 3)}
        if config.get("guidance_embeds"):
            inputs["guidance"] = torch.full((batch,), 3.5)
        return inputs
    raise InputError(f"cannot build example inputs for the diffusers model {name}: pass example_inputs= "
                     "(a dict of its forward's keyword arguments)")
