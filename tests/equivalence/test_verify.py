"""ane_rewrite.verify: metrics, the bar, and where a broken rewrite first diverges."""
import math

import pytest
import torch

import ane_rewrite
from ane_rewrite.errors import InputError
from ane_rewrite.frontend.models import draw_inputs
from tests.zoo import mlp_block


def test_identical_modules_are_equivalent():
    model, example = mlp_block()
    report = ane_rewrite.verify(model, model, example)
    assert report.ok and report.psnr == math.inf and report.max_rel == 0 and report.draws == 3


def test_rewritten_mlp_passes_the_bar():
    model, example = mlp_block()
    report = ane_rewrite.verify(model, ane_rewrite.optimize(model, example), example)
    assert report.ok, report
    assert report.psnr >= 60 and report.max_rel <= 1e-4


def test_a_broken_candidate_fails_and_the_divergence_is_located():
    model, example = mlp_block()
    fast = ane_rewrite.optimize(model, example)
    with torch.no_grad():
        fast.fc3.bias.add_(0.5)  # corrupt the third projection
    report = ane_rewrite.verify(model, fast, example)
    assert not report.ok
    assert report.psnr < 60
    assert report.divergence is not None
    # every node before the third projection still agrees: the first divergence is its conv,
    # compared channels-last with the original linear
    assert report.divergence.startswith("conv2d"), report.divergence
    assert "counterpart of linear_2, made by rule linear_to_conv" in report.divergence
    assert "NOT equivalent" in str(report)


def test_output_shape_mismatch_is_a_problem():
    model, example = mlp_block()

    class Trunc(torch.nn.Module):
        def forward(self, x):
            return model(x)[:, :-1]

    report = ane_rewrite.verify(model, Trunc(), example)
    assert not report.ok and "shape" in report.problems[0]


def test_draws_keep_token_ids_in_range_and_draw_right_then_left_padded_masks():
    ex = {"input_ids": torch.tensor([[0, 999, 5, 7, 8]] * 6), "attention_mask": torch.ones(6, 5, dtype=torch.long)}
    lengths = set()
    for i in range(1, 6):
        d = draw_inputs(ex, i)
        assert 0 <= int(d["input_ids"].min()) and int(d["input_ids"].max()) <= 999
        mask = d["attention_mask"]
        assert mask.dtype == torch.long and mask.shape == (6, 5)
        kept = mask.sum(-1)
        assert bool((kept >= 1).all())                                   # every row keeps a key
        right = (torch.arange(5) < kept[:, None]).long()           # ones, then zeros
        left = (torch.arange(5) >= 5 - kept[:, None]).long()       # zeros, then ones
        assert torch.equal(mask, right if i % 2 else torch.where(torch.arange(6)[:, None] % 2 == 0, left, right))
        lengths |= set(kept.tolist())
    assert len(lengths) > 1  # the padding varies
    assert draw_inputs(ex, 0) is ex


def test_bad_arguments():
    model, example = mlp_block()
    with pytest.raises(InputError):
        ane_rewrite.verify(model, model, example, draws=0)
    with pytest.raises(InputError):
        ane_rewrite.verify(model, model, [example[0]])
