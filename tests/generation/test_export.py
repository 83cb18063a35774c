"""CausalLM.export: one package, functions prefill and decode sharing weights, the caches as
Core ML states; generate_exported runs it here and its greedy tokens are Hugging Face's."""
from collections import Counter

import pytest
import torch

import ane_rewrite
from ane_rewrite.errors import ExecutionError
from ane_rewrite.runtime.program import load_program
from tests.generation.test_lm import build


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    model = build("llama")
    lm = ane_rewrite.optimize_causal_lm(model, max_len=64, prefill_len=16)
    path = tmp_path_factory.mktemp("lm") / "llama.mlpackage"
    lm.export(path)
    return model, lm, path


def _prompts():
    return [torch.randint(3, 1000, (1, n), generator=torch.Generator().manual_seed(n)) for n in (5, 21)]


def test_one_package_two_functions_the_caches_as_states(llama):
    model, lm, path = llama
    program, _ = load_program(path)
    assert sorted(program.functions) == ["decode", "prefill"]
    for name, tokens in (("prefill", 16), ("decode", 1)):
        fn = program.functions[name]
        shapes = {n: tuple(v.shape) for n, v in fn.inputs.items()}
        assert shapes == {"input_ids": (1, tokens), "position": (1,),
                          **{f"{kv}_cache_{i}": (1, 64, 1, 64) for i in range(2) for kv in "kv"}}
        ops = Counter(op.op_type for op in fn.operations)
        assert ops["read_state"] == ops["slice_update"] == ops["coreml_update_state"] == 4
        assert ops["linear"] == 0 and ops["softmax"] == 8  # 2 layers × 4 heads, one softmax each
        ranks = [len(v.shape) for op in fn.operations for v in op.outputs if v.shape is not None]
        assert max(ranks) <= 4
    weights = path / "Data" / "com.apple.CoreML" / "weights"
    size = sum(f.stat().st_size for f in weights.iterdir())
    params = sum(p.numel() for p in model.parameters())
    assert size < 2.2 * params  # fp16, stored once for both functions (twice would be ≥ 4 bytes a weight)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_executed_package_generates_hugging_faces_tokens(llama, precision):
    model, lm, path = llama
    for prompt in _prompts():
        want = model.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert torch.equal(ane_rewrite.generate_exported(path, prompt, 32, precision=precision), want)


@pytest.mark.parametrize("name", ["qwen2", "gemma", "gpt-neox", "phi3", "gpt2"])
def test_other_families_generate_the_same_tokens_from_their_package(name, tmp_path):
    model = build(name)
    lm = ane_rewrite.optimize_causal_lm(model, max_len=64, prefill_len=16)
    lm.export(tmp_path / f"{name}.mlpackage")
    for prompt in _prompts():
        want = model.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert torch.equal(ane_rewrite.generate_exported(tmp_path / f"{name}.mlpackage", prompt, 32), want), name


def test_a_package_not_written_by_export_is_named(tmp_path):
    from tests import zoo

    model, example = zoo.mlp_block()
    ane_rewrite.export(model, example, tmp_path / "mlp.mlpackage", progress=False)
    with pytest.raises(ExecutionError, match="was not written by CausalLM.export"):
        ane_rewrite.generate_exported(tmp_path / "mlp.mlpackage", torch.ones(1, 3, dtype=torch.long))
