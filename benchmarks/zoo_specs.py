"""The zoo's model specifications: how a row's model is built (random weights from a config, nothing
downloaded), and the later families — mixture of experts, rope encoders, gated relative position
bias, rank-6 window partitions and local attention, attention in other shapes — at a realistic width
(``python benchmarks/compare_zoo.py --set families``)."""
from __future__ import annotations


def hf_spec(cls_name: str, seq: int, attn: str | None = None, **config):
    def build():
        import transformers

        cls = getattr(transformers, cls_name)
        cfg = cls.config_class(**config)
        if cls_name.endswith("ForSequenceClassification"):
            cfg.num_labels = 2
        if attn is not None:  # the implementation the family's logit steps need (Gemma 2: eager)
            cfg._attn_implementation = attn
        return cls(cfg).eval()
    return {"family": "transformers", "build": build, "seq": seq}


def timm_spec(name: str, **kwargs):
    def build():
        import timm

        return timm.create_model(name, pretrained=False, **kwargs).eval()
    return {"family": "timm", "build": build, "seq": None}


def _lm(cls: str, **config):
    return hf_spec(cls, 128, num_hidden_layers=2, vocab_size=32000, max_position_embeddings=512, pad_token_id=0, **config)


FAMILIES = {
    # mixture of experts: 8 experts, 2 per token (issue 30); transformers' batched_mm form as is
    "qwen3-moe-512": _lm("Qwen3MoeForCausalLM", hidden_size=512, num_attention_heads=8, num_key_value_heads=4,
                         head_dim=64, intermediate_size=1536, moe_intermediate_size=512, num_experts=8,
                         num_experts_per_tok=2),
    "mixtral-512": _lm("MixtralForCausalLM", hidden_size=512, num_attention_heads=8, num_key_value_heads=4,
                       intermediate_size=1024, num_local_experts=8, num_experts_per_tok=2),
    "gpt-oss-512": _lm("GptOssForCausalLM", hidden_size=512, num_attention_heads=8, num_key_value_heads=4,
                       head_dim=64, intermediate_size=512, num_local_experts=8, num_experts_per_tok=2,
                       sliding_window=64),
    # rope where it sits elsewhere, gated relative bias, xIELU and QK-norm
    "esm-512": hf_spec("EsmModel", 128, num_hidden_layers=2, hidden_size=512, num_attention_heads=8,
                  intermediate_size=2048, vocab_size=33, position_embedding_type="rotary", pad_token_id=1),
    "dinov3-384": hf_spec("DINOv3ViTModel", None, num_hidden_layers=2, hidden_size=384, num_attention_heads=6,
                     intermediate_size=1536, image_size=224, patch_size=16),
    "wavlm-512": hf_spec("WavLMModel", 128, num_hidden_layers=2, hidden_size=512, num_attention_heads=8,
                    intermediate_size=2048),
    "apertus-512": _lm("ApertusForCausalLM", hidden_size=512, num_attention_heads=8, num_key_value_heads=4,
                       intermediate_size=1536),
    # partitions at rank 6 and local attention, which coremltools cannot convert as they are
    "twins-svt-small": timm_spec("twins_svt_small"),
    "hiera-tiny": timm_spec("hiera_tiny_224"),
    # attention in other shapes (issue 30) at their real size: cross-covariance, separable on unfolded
    # patches, outlook (F.unfold / F.fold), factorised, global-query, channel and cascaded group attention
    "xcit-nano": timm_spec("xcit_nano_12_p16_224"),
    "edgenext-xx-small": timm_spec("edgenext_xx_small"),
    "mobilevitv2-050": timm_spec("mobilevitv2_050"),
    "volo-d1": timm_spec("volo_d1_224"),
    "coat-lite-tiny": timm_spec("coat_lite_tiny"),
    "gcvit-xxtiny": timm_spec("gcvit_xxtiny"),
    "davit-tiny": timm_spec("davit_tiny"),
    "efficientvit-m0": timm_spec("efficientvit_m0"),
    "sam2-hiera-tiny": timm_spec("sam2_hiera_tiny"),  # 896 × 896, its default
    "longt5-512": hf_spec("LongT5Model", 128, d_model=512, d_kv=64, num_heads=8, d_ff=1024, num_layers=2,
                     vocab_size=32000, local_radius=16, encoder_attention_type="local", decoder_start_token_id=0),
}
