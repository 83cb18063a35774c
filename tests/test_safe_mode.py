"""optimize's safe mode: a pass that changes the function is rolled back and reported, strict
mode raises, safe=False runs the passes unchecked; on real models it changes nothing."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.errors import EquivalenceError
from ane_rewrite.frontend import models
from ane_rewrite.rewrite.graph import aten
from ane_rewrite.rewrite.pipeline import Pipeline
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule
from tests.zoo import distilbert, mlp_block


def _gelu_as_quick_gelu() -> Pass:
    """A plausible but wrong rewrite: GELU as its sigmoid approximation x·σ(1.702x) (0.02 off)."""
    def quick(rw, node, m):
        return rw.call(aten.mul.Tensor, m["x"], rw.call(aten.sigmoid.default, rw.call(aten.mul.Tensor, m["x"], 1.702)))

    rule = Rule("quick_gelu", (aten.gelu,), lambda node: MatchResult.ok(x=node.args[0]), quick)
    return Pass("approximate_gelu", [rule])


def test_a_wrong_pass_is_rolled_back_and_the_model_stays_equivalent():
    model, example = mlp_block()
    fast = ane_rewrite.optimize(model, example, pipeline=Pipeline([_gelu_as_quick_gelu()]))
    (result,) = fast.ane_report.rolled_back
    assert result.name == "approximate_gelu" and result.undone == {"quick_gelu": 1}
    assert "first divergence" in result.rolled_back and "gelu" in result.rolled_back
    assert ane_rewrite.verify(model, fast, example).ok


def test_strict_raises_and_unsafe_keeps_the_wrong_rewrite():
    model, example = mlp_block()
    with pytest.raises(EquivalenceError, match="pass approximate_gelu"):
        ane_rewrite.optimize(model, example, pipeline=Pipeline([_gelu_as_quick_gelu()]), strict=True)
    unsafe = ane_rewrite.optimize(model, example, pipeline=Pipeline([_gelu_as_quick_gelu()]), safe=False)
    assert unsafe.ane_report.rolled_back == [] and not ane_rewrite.verify(model, unsafe, example).ok


def test_the_default_pipeline_rolls_nothing_back_and_matches_unsafe_mode():
    model, _ = distilbert()
    example = models.example_inputs(model, seq_len=12)
    safe = ane_rewrite.optimize(model, example)
    unsafe = ane_rewrite.optimize(model, example, safe=False)
    assert safe.ane_report.rolled_back == []
    assert safe.ane_report.counts() == unsafe.ane_report.counts()
    with torch.no_grad():
        assert torch.equal(safe(**example).logits, unsafe(**example).logits)
