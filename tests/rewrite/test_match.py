"""ane_rewrite/rewrite/match.py: ``requires`` runs a match only where its pattern holds."""
import torch

from ane_rewrite.rewrite.match import requires
from ane_rewrite.rewrite.rules import MatchResult
from tests.helpers import captured


def _relu_node():
    gm = captured(torch.nn.ReLU().eval(), (torch.randn(2, 3),))
    return next(n for n in gm.graph.nodes if n.op == "call_function" and "relu" in str(n.target))


def test_the_pattern_parts_are_the_match_arguments():
    @requires(lambda node: (node.args[0], 7))
    def match(node, x, k):
        return MatchResult.ok(x=x, k=k)

    relu = _relu_node()
    assert match(relu).bindings == {"x": relu.args[0], "k": 7}
    assert match.__name__ == "match"


def test_one_value_is_one_argument():
    @requires(lambda node: node.args[0])
    def match(node, x):
        return MatchResult.ok(x=x)

    relu = _relu_node()
    assert match(relu).bindings == {"x": relu.args[0]}


def test_no_form_is_a_skip_or_the_given_decline():
    def never(node):
        return None

    @requires(never)
    def skipped(node):
        raise AssertionError("not called")

    @requires(never, decline="no such form")
    def declined(node):
        raise AssertionError("not called")

    relu = _relu_node()
    assert not skipped(relu).matched and not skipped(relu).declined
    assert declined(relu).reason == "no such form"
