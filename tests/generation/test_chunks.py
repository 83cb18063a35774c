"""chunks: a step whose weights pass a budget is cut into chunk packages run in sequence; each
chunk within the budget, the cuts where the fewest values cross, the chain's greedy tokens
Hugging Face's; a weight heavier than a chunk on its own is named."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.errors import ExportError
from ane_rewrite.generation import chunks
from ane_rewrite.generation.stateful import stateful_graph
from ane_rewrite.runtime import load
from tests.generation.test_lm import build

BUDGET = 400_000  # bytes: the embedding table (256 kB) or about one layer (294 kB) of the test Llama


@pytest.fixture(scope="module")
def llama():
    model = build("llama")
    return model, ane_rewrite.optimize_causal_lm(model, max_len=64, prefill_len=16)


def test_every_chunk_fits_and_both_functions_are_cut_alike(llama):
    _, lm = llama
    graph, states = stateful_graph(lm.decode)
    plan = chunks.plan(graph, BUDGET)
    sizes = {n.target: chunks._weight_bytes(graph, n, 2) for n in graph.graph.nodes if n.op == "get_attr"}
    assert len(plan) >= 3 and all(sum(sizes[t] for t in chunk) <= BUDGET for chunk in plan)
    assert set().union(*plan) == {t for t, b in sizes.items() if b}  # every weight in some chunk
    prefill, prefill_states = stateful_graph(lm.prefill)
    for gm, st in ((graph, states), (prefill, prefill_states)):
        parts = chunks.split(gm, chunks.cut_positions(gm, plan), st)
        read = [{n.target for n in part.graph.nodes if n.op == "get_attr" and sizes.get(n.target)} for part, _ in parts]
        assert read == [set(c) for c in plan]  # the same weights in the same chunk, in both functions
        assert sorted(s for _, part_states in parts for s, _ in part_states.values()) == sorted(s for s, _ in st.values())


def test_a_chain_of_chunk_packages_generates_hugging_faces_tokens(llama, tmp_path):
    model, lm = llama
    paths = lm.export(tmp_path / "lm.mlpackage", max_chunk_bytes=BUDGET)
    assert [p.name for p in paths] == [f"lm_{k + 1}of{len(paths)}.mlpackage" for k in range(len(paths))]
    first = load(paths[0], "decode")
    assert first.input_names == ["position", "input_ids"] or set(first.input_names) == {"position", "input_ids"}
    prompt = torch.randint(3, 1000, (1, 21), generator=torch.Generator().manual_seed(21))
    want = model.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(ane_rewrite.generate_exported(paths[0], prompt, 32), want)


def test_a_weight_heavier_than_a_chunk_is_named(llama):
    _, lm = llama
    graph, _ = stateful_graph(lm.decode)
    with pytest.raises(ExportError, match=r"reads model\.model\.embed_tokens\.weight .* on its own"):
        chunks.plan(graph, 100_000)
