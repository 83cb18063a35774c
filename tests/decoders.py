"""Small modern decoders and encoders (random weights, 2 layers, hidden 128) for the tests."""
import torch
import transformers

BASE = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, vocab_size=1000, max_position_embeddings=128, pad_token_id=0)

# name: (transformers class, config overrides, RMSNorms, query heads per layer)
FAMILIES = {
    "llama": ("LlamaForCausalLM", {}, 5, 4),
    "llama-base": ("LlamaModel", {}, 5, 4),
    "qwen3-base": ("Qwen3Model", {}, 9, 4),
    "gpt-neox-base": ("GPTNeoXModel", {"rotary_pct": 0.25}, 0, 4),
    "qwen2": ("Qwen2ForCausalLM", {}, 5, 4),
    "qwen2-base": ("Qwen2Model", {}, 5, 4),
    "qwen3-qk-norm": ("Qwen3ForCausalLM", {}, 9, 4),
    "gemma": ("GemmaForCausalLM", {"head_dim": 32}, 5, 4),
    "gemma-base": ("GemmaModel", {"head_dim": 32}, 5, 4),
    "mistral-sliding-window": ("MistralForCausalLM", {"sliding_window": 8}, 5, 4),
    "gemma3-qk-norm-after-transpose": ("Gemma3ForCausalLM", {"head_dim": 32, "sliding_window": 8}, 13, 4),
    "phi3-fused-qkv": ("Phi3ForCausalLM", {}, 5, 4),
    "phi3-base": ("Phi3Model", {}, 5, 4),
    "olmo2-qk-norm": ("Olmo2ForCausalLM", {}, 9, 4),
    "gpt-neox-partial-rotary": ("GPTNeoXForCausalLM", {"rotary_pct": 0.25}, 0, 4),
    "gpt-j-interleaved": ("GPTJForCausalLM", dict(n_layer=2, n_embd=128, n_head=4, rotary_dim=16, n_positions=128), 0, 4),
    "gpt-j-base": ("GPTJModel", dict(n_layer=2, n_embd=128, n_head=4, rotary_dim=16, n_positions=128), 0, 4),
    "persimmon-qk-layernorm": ("PersimmonForCausalLM", {"qk_layernorm": True}, 0, 4),
    "stablelm-partial-rotary": ("StableLmForCausalLM", {"partial_rotary_factor": 0.25}, 0, 4),
    "modernbert-mlm": ("ModernBertForMaskedLM", {}, 0, 4),
    "modernbert-local-global": ("ModernBertModel", {"global_attn_every_n_layers": 2, "local_attention": 8}, 0, 4),
    "falcon-gqa": ("FalconForCausalLM", {"new_decoder_architecture": True, "num_kv_heads": 2}, 0, 4),
    "falcon-base": ("FalconModel", {"new_decoder_architecture": True, "num_kv_heads": 2}, 0, 4),
    "falcon-multi-query": ("FalconForCausalLM", {"multi_query": True, "new_decoder_architecture": False}, 0, 4),
}


def build(name: str):
    cls_name, extra, _, _ = FAMILIES[name]
    cls = getattr(transformers, cls_name)
    config = cls.config_class(**dict(BASE, **extra))
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(config).eval()
