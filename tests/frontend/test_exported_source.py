"""A saved torch.export program (.pt2) as a source: loaded, optimized, verified and run by the CLI."""
import json

import pytest
import torch

from ane_rewrite import optimize, verify
from ane_rewrite.cli import main
from ane_rewrite.errors import InputError, SourceError
from ane_rewrite.frontend import models
from tests.zoo import distilbert


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, _ = distilbert()
    example = models.example_inputs(model, seq_len=16)
    path = tmp_path_factory.mktemp("pt2") / "distilbert.pt2"
    torch.export.save(torch.export.export(model, (), example, strict=False), path)
    return model, example, str(path)


def test_a_saved_program_loads_with_its_example_inputs_and_rewrites_equivalently(saved):
    model, example, path = saved
    loaded = models.load(path)
    ex = models.example_inputs(loaded)
    assert set(ex) == {"input_ids", "attention_mask"} and ex["input_ids"].shape == (1, 16)
    rewritten = optimize(loaded)
    assert rewritten.ane_report.results, "no pass ran"
    assert verify(loaded, rewritten, ex).ok
    # the rewritten program computes the original model's function, under its parameter names
    with torch.no_grad():
        out = rewritten(**ex)
        got = out.logits if hasattr(out, "logits") else out[0]
        assert torch.allclose(got, model(**ex).logits, atol=1e-4)
    rewritten.load_state_dict(loaded.state_dict())
    assert {n for n, _ in rewritten.named_parameters()} == {n for n, _ in model.named_parameters()}


def test_a_saved_program_refuses_other_shapes(saved):
    _, _, path = saved
    loaded = models.load(path)
    with pytest.raises(InputError, match="static shapes"):
        models.example_inputs(loaded, seq_len=32)
    with pytest.raises(InputError, match="batch 1"):
        models.example_inputs(loaded, batch=2)


def test_bad_saved_programs_name_their_cause(tmp_path):
    with pytest.raises(SourceError, match="no saved program"):
        models.load(str(tmp_path / "missing.pt2"))
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="not a saved torch.export program"):
        models.load(str(junk))


def test_the_cli_optimizes_a_saved_program(saved, tmp_path, capsys):
    _, _, path = saved
    code = main(["optimize", path, "--no-verify", "--json", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["equivalence"]["ok"]
    assert result["inputs"]["input_ids"] == [1, 16]
    assert (tmp_path / "rewritten.mlpackage").exists() and (tmp_path / "baseline.mlpackage").exists()
