"""Mixture-of-experts blocks made static (ane_rewrite/frontend/experts.py).

    grouped_mm: histc(ids) → sort → grouped matmul           (what transformers runs by default)
    dense:      gates_TE = Σ_k w_TK·[ids_TK = e];  y = W_down·(gate(W_up·x) · gates)   (what optimize captures)

Every experts form transformers' decorator allows (gated or not, concatenated or interleaved
gate, biases, transposed weights, a norm after each expert) against transformers' own batched
routing; whole models rewritten, exported, executed and generating; routing by hand named."""
import copy

import pytest
import torch
import transformers
from hypothesis import given, settings, strategies as st
from transformers.integrations.moe import use_experts_implementation

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.errors import ExportError
from ane_rewrite.frontend.experts import DENSE, dense_experts, experts_modules

FORMS = {  # decorator arguments of transformers' use_experts_implementation
    "gated": {},
    "not-gated": {"has_gate": False},
    "interleaved-biased-transposed": {"is_concatenated": False, "is_transposed": True, "has_bias": True},
    "post-expert-norm": {"has_post_expert_norm": True},
}


def _experts(form: str, experts: int, hidden: int = 12, inner: int = 8) -> torch.nn.Module:
    flags = FORMS[form]

    class Experts(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.num_experts, self.act_fn = experts, torch.nn.SiLU()
            out = 2 * inner if flags.get("has_gate", True) else inner
            name = "gate_up_proj" if flags.get("has_gate", True) else "up_proj"
            up = (experts, hidden, out) if flags.get("is_transposed") else (experts, out, hidden)
            down = (experts, inner, hidden) if flags.get("is_transposed") else (experts, hidden, inner)
            setattr(self, name, torch.nn.Parameter(torch.randn(up) / hidden ** 0.5))
            self.down_proj = torch.nn.Parameter(torch.randn(down) / inner ** 0.5)
            if flags.get("has_bias"):
                setattr(self, f"{name}_bias", torch.nn.Parameter(torch.randn(experts, out)))
                self.down_proj_bias = torch.nn.Parameter(torch.randn(experts, hidden))
            if flags.get("has_post_expert_norm"):
                self.post_expert_norm = torch.nn.LayerNorm(hidden)

        def forward(self, hidden_states, top_k_index, top_k_weights):
            raise AssertionError("dispatched by the experts interface")

        if not flags.get("is_concatenated", True):
            def _apply_gate(self, gate_up):  # an interleaved, clamped gate, as GPT-OSS's
                gate, up = gate_up[..., ::2].clamp(max=2.0), gate_up[..., 1::2].clamp(-2.0, 2.0)
                return (up + 1) * gate * torch.sigmoid(gate * 1.7)

    config = transformers.PretrainedConfig()
    config._experts_implementation = "batched_mm"
    return use_experts_implementation(Experts, **flags)(config)


@settings(max_examples=12, deadline=None)
@given(form=st.sampled_from(sorted(FORMS)), tokens=st.integers(1, 9), experts=st.integers(1, 6), data=st.data())
def test_dense_experts_compute_transformers_routing(form, tokens, experts, data):
    torch.manual_seed(0)
    module = _experts(form, experts)
    top_k = data.draw(st.integers(1, experts))
    x = torch.randn(tokens, 12)
    ids = torch.stack([torch.randperm(experts)[:top_k] for _ in range(tokens)])
    weights = torch.rand(tokens, top_k)
    want = module(x, ids, weights)  # transformers' batched_mm: W[ids] gathered, bmm
    dense = copy.deepcopy(module)
    dense_experts(dense)
    assert dense.config._experts_implementation == DENSE
    torch.testing.assert_close(dense(x, ids, weights), want, rtol=1e-5, atol=1e-5)
    assert module.config._experts_implementation == "batched_mm"


def _qwen3_moe(**extra):
    config = transformers.Qwen3MoeConfig(vocab_size=100, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                         num_experts=8, num_experts_per_tok=2, max_position_embeddings=128,
                                         pad_token_id=0, **extra)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return config, transformers.Qwen3MoeModel(config).eval()


def _ops(gm) -> set[str]:
    return {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}


def test_an_moe_model_is_rewritten_exported_and_executed(tmp_path):
    _, model = _qwen3_moe()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = ane_rewrite.optimize(model, seq_len=16)
    experts = fast.ane_report.results[0]
    assert experts.name == "experts" and experts.counts["dense_experts"] == 2 and experts.rolled_back is None
    assert not any(op.startswith(("aten.histc", "aten.bmm", "aten.index.Tensor", "transformers.")) for op in _ops(fast))
    assert "aten.linear.default" not in _ops(fast)
    assert model.config._experts_implementation == "grouped_mm"  # the user's model is not touched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(dict(fast.named_parameters())) == set(dict(model.named_parameters()))
    report = ane_rewrite.verify(model, fast, fast.example_inputs)
    assert report.ok and report.psnr >= 60
    path = ane_rewrite.export(fast, fast.example_inputs, tmp_path / "moe.mlpackage", progress=False) and tmp_path / "moe.mlpackage"
    summary = mil.summary(mil.program_ops(path))
    assert summary["max_rank"] <= 4 and summary["linear"] == 0
    executed = ane_rewrite.verify(model, path, fast.example_inputs)
    assert executed.ok and executed.psnr >= 60
    # the router runs on the channels-first tokens and the gates spread by products: only the
    # routing's E channels turn between layouts, so no more transposes than the model as is
    base = ane_rewrite.export(model, fast.example_inputs, tmp_path / "base.mlpackage", progress=False)
    assert summary["transpose"] <= mil.summary(mil.program_ops(base))["transpose"]


def test_a_dense_form_that_computes_otherwise_is_rolled_back(monkeypatch):
    from ane_rewrite.frontend import experts as experts_module

    real = experts_module.dense_experts_forward
    monkeypatch.setattr(experts_module, "dense_experts_forward", lambda *a: 1.5 * real(*a))
    _, model = _qwen3_moe()
    fast = ane_rewrite.optimize(model, seq_len=8)
    assert fast.ane_report.results[0].rolled_back is not None
    assert ane_rewrite.verify(model, fast, fast.example_inputs).ok
    with pytest.raises(ane_rewrite.EquivalenceError, match="experts"):
        ane_rewrite.optimize(model, seq_len=8, strict=True)


def test_routing_by_data_is_declined_and_named_at_export(tmp_path):
    class HandRouted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.router = torch.nn.Linear(16, 3)
            self.experts = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(3))

        def forward(self, x):
            weight, chosen = self.router(x).softmax(-1).max(-1)
            out = torch.zeros_like(x)
            for e, expert in enumerate(self.experts):
                rows = torch.nonzero(chosen[0] == e).squeeze(-1)
                out = out.index_add(1, rows, expert(x[:, rows]) * weight[:, rows, None])
            return out

    model = HandRouted().eval()
    fast = ane_rewrite.optimize(model, (torch.randn(1, 8, 16),))
    declined = fast.ane_report.results[0].declined
    assert declined and all("routes tokens by their values" in d.reason for d in declined)
    assert experts_modules(model) == []
    with pytest.raises(ExportError, match="nonzero"):
        ane_rewrite.export(model, (torch.randn(1, 8, 16),), tmp_path / "x.mlpackage", progress=False)


def test_an_moe_decoder_generates_hugging_faces_tokens_from_its_package(tmp_path):
    config, _ = _qwen3_moe()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.Qwen3MoeForCausalLM(config).eval()
    lm = ane_rewrite.optimize_causal_lm(model, max_len=48, prefill_len=8)
    assert lm.decode.ane_report.results[0].counts["dense_experts"] == 2
    lm.export(tmp_path / "moe_lm.mlpackage")
    prompt = torch.randint(1, 100, (1, 5), generator=torch.Generator().manual_seed(3))
    want = model.generate(prompt, max_new_tokens=16, do_sample=False, pad_token_id=0)
    assert torch.equal(ane_rewrite.generate_exported(tmp_path / "moe_lm.mlpackage", prompt, 16), want)
