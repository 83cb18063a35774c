"""ane_rewrite/equivalence/guard.py: the safe-mode check of a graph module against its capture."""
import torch
from torch import nn

from ane_rewrite.equivalence.guard import Guard
from tests.helpers import captured


class _Masked(nn.Module):
    """Sums the tokens a 0/1 mask keeps; a row the mask empties divides 0 by 0 (NaN)."""

    def forward(self, x, mask):
        kept = mask.unsqueeze(-1).to(x.dtype)
        return (x * kept).sum(1) / kept.sum(1)


def _example():
    return {"x": torch.randn(2, 6, 3), "mask": torch.ones(2, 6, dtype=torch.long)}


def test_the_draw_is_fresh_with_left_and_right_padded_rows():
    guard = Guard(captured(_Masked(), _example()), _example())
    first, drawn = guard.inputs
    assert not torch.equal(first["x"], drawn["x"])
    left, right = drawn["mask"]
    assert left[-1] == 1 and bool(left.diff().ge(0).all())    # zeros, then ones
    assert right[0] == 1 and bool(right.diff().le(0).all())   # ones, then zeros
    assert not torch.equal(drawn["mask"], first["mask"])


def test_an_equal_module_passes_and_a_scaled_one_is_named():
    example = _example()
    gm = captured(_Masked(), example)
    guard = Guard(gm, example)
    assert guard(gm) is None

    class Scaled(_Masked):
        def forward(self, x, mask):
            return super().forward(x, mask) * 1.001

    problem = guard(captured(Scaled(), example))
    assert problem is not None and problem.startswith("output on the example inputs: PSNR")


def test_the_originals_nan_must_be_reproduced_where_it_is():
    example = {"x": torch.randn(2, 6, 3), "mask": torch.tensor([[1] * 6, [0] * 6])}
    guard = Guard(captured(_Masked(), example), example, draws=(0,))
    assert guard.expected[0]["output"][1].isnan().all()
    assert guard(captured(_Masked(), example)) is None

    class Zeroed(_Masked):  # what a rewrite that "fixed" the empty row would compute
        def forward(self, x, mask):
            return super().forward(x, mask).nan_to_num(0.0)

    assert "inf/NaN" in guard(captured(Zeroed(), example))
