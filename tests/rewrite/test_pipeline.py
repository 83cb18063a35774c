"""ane_rewrite/rewrite/pipeline.py: passes in a declared order, a lint after each one."""
import pytest
import torch
from torch import nn

from ane_rewrite.errors import LintError
from ane_rewrite.rewrite.graph import aten
from ane_rewrite.rewrite.pipeline import Pipeline
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule
from tests.helpers import captured


def _relu_module():
    return nn.Sequential(nn.ReLU()).eval(), (torch.randn(2, 3),)


def test_pipeline_refuses_an_order_that_breaks_a_constraint():
    a, b = Pass("a", []), Pass("b", [])
    Pipeline([a, b], constraints=[("a", "b", "b needs a")])
    with pytest.raises(ValueError, match="a before b"):
        Pipeline([b, a], constraints=[("a", "b", "b needs a")])


def test_lint_error_message_lists_passes():
    class Corrupt(Pass):
        def __call__(self, gm):
            result = super().__call__(gm)
            for n in gm.graph.nodes:
                if n.op == "call_function" and n.users:
                    n.meta.pop("val", None)
            return result

    gm = captured(*_relu_module())
    with pytest.raises(LintError, match=r"after pass second \(passes run: first, second\)"):
        Pipeline([Pass("first", []), Corrupt("second", [])])(gm)


def test_a_pass_that_adds_a_view_fails_the_lint():
    """Rewritten graphs have value semantics: a view would depend on its input's strides."""
    def to_view(rw, node, m):
        flat = rw.call(aten.view.default, m["x"], [-1])
        return rw.call(aten.view.default, rw.call(aten.clamp_min.default, flat, 0.0), [2, 3])

    rule = Rule("relu_via_view", (aten.relu,), lambda node: MatchResult.ok(x=node.args[0]), to_view)
    gm = captured(*_relu_module())
    with pytest.raises(LintError, match=r"after pass viewer .*is a view"):
        Pipeline([Pass("viewer", [rule])])(gm)


def test_results_are_collected_per_pass_in_order():
    gm = captured(*_relu_module())
    result = Pipeline([Pass("first", []), Pass("second", [])])(gm)
    assert [r.name for r in result.results] == ["first", "second"]
    assert result.counts() == {"first": {}, "second": {}}
