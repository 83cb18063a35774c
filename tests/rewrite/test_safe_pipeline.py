"""ane_rewrite/rewrite/pipeline.py in safe mode: a pass that breaks equivalence or fails is
rolled back and reported, the passes after it run; strict mode raises."""
import pytest
import torch
from torch import nn

from ane_rewrite.equivalence.guard import Guard
from ane_rewrite.errors import EquivalenceError
from ane_rewrite.rewrite.graph import aten
from ane_rewrite.rewrite.pipeline import Pipeline
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule
from ane_rewrite.rewrite.snapshot import Snapshot
from tests.helpers import captured, count, outputs


def _setup():
    module, example = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval(), (torch.randn(5, 3),)
    gm = captured(module, example)
    return module, example, gm, Guard(Snapshot(gm).module(gm), example)


def _relu_as_clamp(name: str, floor: float) -> Pass:
    rule = Rule(f"relu_to_clamp_{floor}", (aten.relu,), lambda node: MatchResult.ok(x=node.args[0]),
                lambda rw, node, m: rw.call(aten.clamp_min.default, m["x"], floor))
    return Pass(name, [rule])


class _Counting:
    def __init__(self, guard):
        self.guard, self.calls = guard, 0

    def __call__(self, gm):
        self.calls += 1
        return self.guard(gm)


def test_a_pass_that_changes_the_function_is_rolled_back_and_the_next_one_runs():
    module, example, gm, guard = _setup()
    result = Pipeline([_relu_as_clamp("wrong", 0.5), _relu_as_clamp("right", 0.0)])(gm, guard=guard)
    wrong, right = result.results
    assert wrong.rolled_back is not None and "PSNR" in wrong.rolled_back and "relu" in wrong.rolled_back
    assert wrong.counts == {} and wrong.undone == {"relu_to_clamp_0.5": 1}
    assert "ROLLED BACK" in wrong.summary() and result.rolled_back == [wrong]
    assert right.counts == {"relu_to_clamp_0.0": 1} and right.rolled_back is None
    assert count(gm, "relu") == 0 and count(gm, "clamp_min") == 1
    assert torch.equal(outputs(gm, example), outputs(module, example))


def test_strict_mode_raises_naming_the_pass():
    _, _, gm, guard = _setup()
    with pytest.raises(EquivalenceError, match="pass wrong changed what the model computes: .*PSNR"):
        Pipeline([_relu_as_clamp("wrong", 0.5), _relu_as_clamp("right", 0.0)])(gm, guard=guard, strict=True)


def test_a_pass_that_raises_is_rolled_back_with_its_error():
    def explode(rw, node, m):
        rw.constant("scratch", torch.ones(3))
        raise RuntimeError("boom")

    rule = Rule("explode", (aten.relu,), lambda node: MatchResult.ok(x=node.args[0]), explode)
    module, example, gm, guard = _setup()
    result = Pipeline([Pass("broken", [rule]), _relu_as_clamp("right", 0.0)])(gm, guard=guard)
    broken, right = result.results
    assert broken.rolled_back == "the pass failed: RuntimeError: boom"
    assert right.changed and not any(n.startswith("_ane_") for n, _ in gm.named_buffers())
    assert torch.equal(outputs(gm, example), outputs(module, example))
    with pytest.raises(RuntimeError, match="boom"):  # unguarded, the error is the caller's
        Pipeline([Pass("broken", [rule])])(captured(module, example))


def test_an_equivalent_pipeline_is_checked_once():
    _, _, gm, guard = _setup()
    counting = _Counting(guard)
    result = Pipeline([_relu_as_clamp("right", 0.0), Pass("idle", [])])(gm, guard=counting)
    assert counting.calls == 1 and result.rolled_back == []


def test_a_failing_check_replays_the_passes_one_by_one():
    """Once the whole pipeline fails its check, the pipeline starts again from the captured
    graph and checks after each pass that changed something (here: the two that do)."""
    _, _, gm, guard = _setup()
    counting = _Counting(guard)
    Pipeline([_relu_as_clamp("wrong", 0.5), Pass("idle", []), _relu_as_clamp("right", 0.0)])(gm, guard=counting)
    assert counting.calls == 1 + 2
