"""ane_rewrite/coreml/program.py: the rewritten GraphModule as the ExportedProgram coremltools
converts — the same graph, node for node, its tensors lifted into a signature; nothing traced."""
import pytest
import torch
from torch.export.graph_signature import InputKind

import ane_rewrite
from ane_rewrite.coreml.program import exported_program, is_captured
from ane_rewrite.errors import InputError
from tests import zoo


def _calls(graph):
    return [(n.target, n.name) for n in graph.nodes if n.op == "call_function"]


def test_the_program_is_the_rewritten_graph_with_its_tensors_lifted():
    module = zoo.SelfAttention(c=32, heads=4, form="sdpa", causal=True).eval()
    example = (torch.randn(2, 9, 32),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    before = _calls(fast.graph)
    ep = exported_program(fast)
    assert _calls(ep.graph) == before and _calls(fast.graph) == before  # same nodes; fast untouched
    kinds = {}
    for spec in ep.graph_signature.input_specs:
        kinds.setdefault(spec.kind, []).append(spec.target)
    assert sorted(kinds[InputKind.PARAMETER]) == sorted(k for k, _ in fast.named_parameters())
    assert kinds[InputKind.CONSTANT_TENSOR] and all(t.startswith("_ane_") for t in kinds[InputKind.CONSTANT_TENSOR])
    assert len(kinds[InputKind.USER_INPUT]) == 1
    assert not [n for n in ep.graph.nodes if n.op in ("get_attr", "call_module")]
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*example), fast(*example))


def test_keyword_inputs_keep_their_names():
    model, _ = zoo.distilbert()
    fast = ane_rewrite.optimize(model, seq_len=8, lower_every_attention=True)
    ep = exported_program(fast)
    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    assert users == ["input_ids", "attention_mask"]


def test_only_captured_graphs_convert_as_they_are():
    module, example = zoo.mlp_block()
    assert not is_captured(module)
    assert is_captured(ane_rewrite.optimize(module, example, lower_every_attention=True))


def test_inputs_other_than_the_captured_shapes_are_refused(tmp_path):
    module, example = zoo.mlp_block()
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    with pytest.raises(InputError, match=r"captured with \(2, 10, 48\)"):
        ane_rewrite.export(fast, (torch.randn(2, 11, 48),), tmp_path / "m.mlpackage", progress=False)
