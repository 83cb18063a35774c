"""70 generated architectures (tests/generated/strategies.py): each comes back from optimize
equivalent over five draws — three more than safe mode's guard saw — with no pass rolled back
(safe mode would hide a pass that breaks one), or raises a named error; none comes back silently
different. ``benchmarks/generated_architectures.py`` runs 1,000."""
import functools

import pytest
from hypothesis import HealthCheck, given, settings

from ane_rewrite import passes
from ane_rewrite.rewrite.graph import aten
from ane_rewrite.rewrite.pipeline import Pipeline
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule

from .architecture import Spec, build
from .strategies import architectures, check


def assert_clean(outcome) -> None:
    assert outcome.error is None, (outcome.spec, outcome.error)
    assert not outcome.rolled_back, (outcome.spec, outcome.rolled_back)  # a pass broke it; safe mode undid it
    assert outcome.equivalent, (outcome.spec, outcome.psnr)


@settings(max_examples=70, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(architectures())
def test_a_generated_architecture_comes_back_equivalent(spec):
    assert_clean(check(spec))


def test_the_builder_covers_long_sequences_windows_gqa_and_shared_weights():
    """The corners the strategies reach, built and run once each."""
    specs = [Spec(seq=1024, width=24, heads=4, kv_heads=2, positions="alibi", mask="causal_padding"),
             Spec(kind="vision", seq=8, window=4, width=36, heads=6, kv_heads=3, positions="relative",
                  stem="conv_patch", shared=True, depth=2),
             Spec(seq=1, width=20, heads=5, kv_heads=1, positions="rope_pairs", mask="sliding", parallel=True)]
    for spec in specs:
        model, example = build(spec)
        assert len(model.blocks) == spec.depth
        assert len({id(b) for b in model.blocks}) == (1 if spec.shared else spec.depth)
        assert_clean(check(spec))


def _breaking_pass() -> Pass:
    """Scales every softmax by 1.5: a pass that breaks any attention."""
    def match(node):
        return MatchResult.skip() if node.meta.get("ane_rule") == "break_softmax" else MatchResult.ok()

    def rewrite(rw, node, m):
        return rw.call(aten.mul.Tensor, rw.call(node.target, *node.args), 1.5)

    return Pass("breaking", [Rule("break_softmax", (aten.softmax, aten._softmax), match, rewrite)])


def test_a_planted_breaking_pass_fails_the_check_though_safe_mode_keeps_the_model_right(monkeypatch):
    default = passes.default_pipeline

    @functools.wraps(default)
    def with_breaking_pass(*args, **kwargs):
        return Pipeline(default(*args, **kwargs).passes + [_breaking_pass()])

    monkeypatch.setattr(passes, "default_pipeline", with_breaking_pass)
    outcome = check(Spec(seq=16, width=24, heads=4, kv_heads=4, positions="learned", mask="padding"))
    assert outcome.equivalent and outcome.error is None  # what the check asserted before: it passed
    assert any(r.startswith("breaking: ROLLED BACK") for r in outcome.rolled_back), outcome.rolled_back
    with pytest.raises(AssertionError):
        assert_clean(outcome)
