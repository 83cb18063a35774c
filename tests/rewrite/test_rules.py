"""ane_rewrite/rewrite/rules.py: rules, passes, what they report, the rewriter."""
import pytest
import torch
from torch import nn

from ane_rewrite.errors import RewriteError
from ane_rewrite.rewrite.graph import aten, shape
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule
from tests.helpers import captured, count, outputs


def _relu_module():
    return nn.Sequential(nn.ReLU()).eval(), (torch.randn(2, 3),)


def _relu_to_clamp():
    def match(node):
        if shape(node.args[0])[0] > 100:
            return MatchResult.fail("batch too large")
        return MatchResult.ok(x=node.args[0])

    return Rule("relu_to_clamp", (aten.relu,), match, lambda rw, node, m: rw.call(aten.clamp_min.default, m["x"], 0.0))


def test_pass_counts_rewrites_stamps_provenance_and_keeps_numbers():
    module, example = _relu_module()
    gm = captured(module, example)
    result = Pass("p", [_relu_to_clamp()])(gm)
    assert result.counts == {"relu_to_clamp": 1} and result.changed
    (clamp,) = [n for n in gm.graph.nodes if n.target == aten.clamp_min.default]
    assert clamp.meta["ane_rule"] == "relu_to_clamp" and clamp.meta["ane_origin"] == "relu"
    assert count(gm, "relu") == 0
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))
    assert "relu_to_clamp 1" in result.summary()


def test_declined_candidates_are_reported_with_reasons():
    def match(node):
        return MatchResult.fail("never, for the test")

    gm = captured(*_relu_module())
    result = Pass("p", [Rule("r", (aten.relu,), match, None)])(gm)
    assert not result.changed
    assert [(d.rule, d.node, d.reason) for d in result.declined] == [("r", "relu", "never, for the test")]
    assert "r declined relu: never, for the test" in str(result)


def test_a_rewrite_that_changes_the_shape_is_refused():
    bad = Rule("bad", (aten.relu,), lambda n: MatchResult.ok(x=n.args[0]),
               lambda rw, node, m: rw.call(aten.sum.default, m["x"]))
    gm = captured(*_relu_module())
    with pytest.raises(RewriteError, match="bad replaced relu"):
        Pass("p", [bad])(gm)


def test_a_rule_that_never_settles_is_stopped():
    renew = Rule("renew", (aten.neg,), lambda n: MatchResult.ok(x=n.args[0]),
                 lambda rw, node, m: rw.call(aten.neg.default, m["x"]))  # a fresh copy each time
    gm = captured(_Neg().eval(), (torch.randn(3),))
    with pytest.raises(RewriteError, match="fixpoint"):
        Pass("p", [renew])(gm)


class _Neg(nn.Module):
    def forward(self, x):
        return -x
