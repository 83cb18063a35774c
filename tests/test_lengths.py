"""optimize_lengths: one rewrite per length, one package with a function per length sharing its
weights; the analyzer and the executor per function; each length verified."""
import pytest

import ane_rewrite
from ane_rewrite import optimize_lengths
from ane_rewrite.coreml.compress import weights_bytes
from ane_rewrite.coreml.mil import function_names, program_inputs, program_ops
from ane_rewrite.errors import InputError
from tests.zoo import distilbert

LENS = [16, 32, 64]


@pytest.fixture(scope="module")
def lengths(tmp_path_factory):
    model, _ = distilbert()
    # queries are chunked past 32 a chunk: the 64-token rewrite softmaxes in two chunks, the others in one
    lens = optimize_lengths(model, LENS, max_queries_per_chunk=32, lower_every_attention=True)
    folder = tmp_path_factory.mktemp("lengths")
    new, base = lens.export(folder / "rewritten.mlpackage"), lens.export(folder / "baseline.mlpackage", baseline=True)
    one = folder / "one.mlpackage"
    ane_rewrite.export(lens.rewritten[16], lens.example_inputs[16], one, progress=False)
    return lens, new, base, one


def test_one_function_per_length_each_rewritten_for_its_length(lengths):
    lens, new, _, _ = lengths
    assert function_names(new) == ["seq_16", "seq_32", "seq_64"]  # the first length is the default function
    for name, n in lens.functions.items():
        shapes = {v.name: v.shape for v in program_inputs(new, name)}
        assert shapes == {"input_ids": (1, n), "attention_mask": (1, n)}
    softmax = {n: sum(op.type == "softmax" for op in program_ops(new, f"seq_{n}")) for n in LENS}
    assert softmax[64] == 2 * softmax[32] == 2 * softmax[16], softmax  # chunking chosen per length
    assert sum(op.type == "linear" for op in program_ops(new, "seq_64")) == 0


def test_the_functions_share_their_weights(lengths):
    _, new, base, one = lengths
    assert weights_bytes(new) < 1.1 * weights_bytes(one), (weights_bytes(new), weights_bytes(one))
    assert weights_bytes(base) < 1.1 * weights_bytes(one)


def test_every_length_analyzed_and_verified_executed(lengths):
    lens, new, base, _ = lengths
    activations = []
    for name, n in lens.functions.items():
        rewritten, baseline = ane_rewrite.analyze(new, function=name), ane_rewrite.analyze(base, function=name)
        assert rewritten.metrics["op_mix"].get("linear", 0) == 0 < baseline.metrics["op_mix"]["linear"]
        activations.append(rewritten.metrics["activation_bytes_padded"])
    assert activations == sorted(activations) and activations[0] < activations[-1]  # each function's own shapes
    reports = lens.verify_package(new, draws=3)
    assert sorted(reports) == LENS
    for n, by_precision in reports.items():
        assert by_precision["fp32"].ok and by_precision["fp16"].ok, (n, by_precision)


def test_a_function_the_package_lacks_is_named(lengths):
    _, new, _, _ = lengths
    with pytest.raises(InputError, match="no function 'seq_128'.*seq_16"):
        ane_rewrite.analyze(new, function="seq_128")


@pytest.mark.parametrize("bad", [[], [8, 8], [0, 16]])
def test_bad_lengths_are_refused(bad):
    model, _ = distilbert()
    with pytest.raises(InputError, match="distinct positive"):
        optimize_lengths(model, bad)
