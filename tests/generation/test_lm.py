"""optimize_causal_lm: greedy tokens identical to Hugging Face's generate; the decode function
has no linear, attention per head, no op of rank > 4; bad input named."""
import pytest
import torch
import transformers

import ane_rewrite
from ane_rewrite.errors import InputError
from tests import decoders

GPT2 = ("GPT2LMHeadModel", dict(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=128,
                                bos_token_id=1, eos_token_id=2))
CASES = {  # the families the issue names, a sliding window, and softcapped logits (eager)
    "llama": ("LlamaForCausalLM", {}), "qwen2": ("Qwen2ForCausalLM", {}),
    "gemma": ("GemmaForCausalLM", {"head_dim": 32}), "gpt-neox": ("GPTNeoXForCausalLM", {"rotary_pct": 0.25}),
    "phi3": ("Phi3ForCausalLM", {"eos_token_id": 2}), "gpt2": GPT2,
    "mistral-sliding-window": ("MistralForCausalLM", {"sliding_window": 8}),
    "gemma2-softcap": ("Gemma2ForCausalLM", dict(head_dim=32, sliding_window=8, attn_logit_softcapping=50.0,
                                                  final_logit_softcapping=30.0)),
}


def build(name):
    cls_name, extra = CASES[name]
    cls = getattr(transformers, cls_name)
    config = cls.config_class(**(extra if name == "gpt2" else dict(decoders.BASE, **extra)))
    config._attn_implementation = "eager" if "softcap" in name else "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(config).eval()


def _ops(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("name", list(CASES))
def test_greedy_tokens_are_hugging_faces(name):
    model = build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lm = ane_rewrite.optimize_causal_lm(model, max_len=64, prefill_len=16)
    # 5 tokens: one padded chunk; 21: a chunk and one that overlaps it
    for n in (5, 21):
        prompt = torch.randint(3, 1000, (1, n), generator=torch.Generator().manual_seed(n))
        want = model.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert torch.equal(lm.generate(prompt, max_new_tokens=32), want), name
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.config._attn_implementation in ("sdpa", "eager")  # the user's model keeps its attention

    ops = _ops(lm.decode)
    heads = model.config.num_attention_heads if name != "gpt2" else model.config.n_head
    layers = model.config.num_hidden_layers if name != "gpt2" else model.config.n_layer
    assert not any("linear" in o for o in ops), name
    assert not any("scaled_dot_product_attention" in o for o in ops), name
    assert sum("softmax" in o for o in ops) == heads * layers  # one per head (per-head attention)
    ranks = [n.meta["val"].dim() for n in lm.decode.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    assert max(ranks) <= 4
    assert not lm.prefill.ane_report.rolled_back and not lm.decode.ane_report.rolled_back
    # the decode function reads the prefill function's weights: one copy
    shared = dict(lm.prefill.named_parameters(remove_duplicate=False))
    assert all(p is shared[k] for k, p in lm.decode.named_parameters(remove_duplicate=False))


def test_cache_channels_hold_kv_heads_only():
    model = build("llama")  # 4 query heads, 2 key/value heads of 32
    lm = ane_rewrite.optimize_causal_lm(model, max_len=32, prefill_len=8)
    assert lm.channels == [64, 64]
    assert [tuple(c.shape) for c in lm.new_caches()] == [(1, 64, 1, 32)] * 4


def test_bad_input_is_named():
    model = build("llama")
    with pytest.raises(InputError, match="prefill_len"):
        ane_rewrite.optimize_causal_lm(model, max_len=8, prefill_len=16)
    with pytest.raises(InputError, match="exceeds the model's 128 positions"):
        ane_rewrite.optimize_causal_lm(model, max_len=256, prefill_len=16)
    with pytest.raises(InputError, match="BertModel has no language-modelling head"):
        ane_rewrite.optimize_causal_lm(transformers.BertModel(transformers.BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)))
    lm = ane_rewrite.optimize_causal_lm(model, max_len=16, prefill_len=8)
    with pytest.raises(InputError, match="cache slots"):
        lm.generate(torch.ones(1, 10, dtype=torch.long), max_new_tokens=8)
    with pytest.raises(InputError, match="one prompt"):
        lm.generate(torch.ones(2, 4, dtype=torch.long))
