"""passes/_slice_views.py: a slice of a view that resizes the last axis (a copy) is taken first,
so the copy moves the slice's part only (Hiera's query pooling: q of a fused qkv projection
regrouped into rows for a max pool); a view with other readers is left as it is."""
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.passes._slice_views import slice_before_view
from ane_rewrite.rewrite.graph import aten, is_op, shape
from tests.helpers import captured

B, C, S, ROWS = 1, 16, 64, 8


class PooledQuery(nn.Module):
    def __init__(self, keep_view: bool = False):
        super().__init__()
        self.qkv, self.keep_view = nn.Conv2d(C, 3 * C, 1), keep_view

    def forward(self, x):  # x (B, C, 1, S)
        grid = self.qkv(x).reshape(B, 3 * C, ROWS, S // ROWS)
        q = nn.functional.max_pool2d(grid[:, :C], 2)
        return (q, grid) if self.keep_view else q


def test_the_slice_is_taken_before_the_copying_view():
    module = PooledQuery().eval()
    example = (torch.randn(B, C, 1, S),)
    fast = ane_rewrite.optimize(module, example)
    assert fast.ane_report.counts()["cleanup"].get("slice_before_view") == 1
    sliced = [n for n in fast.graph.nodes if is_op(n, aten.slice)]
    assert len(sliced) == 1 and shape(sliced[0].args[0]) == (B, 3 * C, 1, S)  # on the conv's output
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict


def test_a_view_read_elsewhere_is_left_as_it_is():
    module = PooledQuery(keep_view=True).eval()
    gm = captured(module, (torch.randn(B, C, 1, S),))
    slices = [n for n in gm.graph.nodes if is_op(n, aten.slice) and is_op(n.args[0], aten.reshape)]
    assert slices and not slice_before_view.match(slices[0]).matched
