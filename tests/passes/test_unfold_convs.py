"""passes/_unfold_convs.py: ``F.unfold`` (im2col) and ``F.fold`` (col2im) of any kernel, dilation,
padding and stride become one grouped conv2d / conv_transpose2d with one-hot weights each — exact,
overlapping windows summed as fold sums them — and the export has no gather, scatter or im2col."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml.mil import op_mix, program_ops
from ane_rewrite.passes._unfold_convs import fold_as_conv, unfold_as_conv
from ane_rewrite.passes.windows import windows
from ane_rewrite.rewrite.graph import is_op, rank
from tests.helpers import captured, count, outputs


class UnfoldFold(nn.Module):
    """conv → unfold → a mix over the windows → fold → conv (outlook attention's frame)."""

    def __init__(self, c: int, **window):
        super().__init__()
        self.window = window
        self.conv_in, self.conv_out = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        cols = nn.functional.unfold(self.conv_in(x), **self.window)
        cols = cols.softmax(dim=-1) * cols
        return cols, self.conv_out(nn.functional.fold(cols, x.shape[-2:], **self.window))


# (kernel, dilation, padding, stride, image): VOLO's overlapping windows (kernel 3, padding 1, stride 1
# or 2), stride 2 past the windows (a row cut by the padding), zeros past the last window, dilation,
# unequal kernels, patches
WINDOWS = [(3, 1, 1, 1, (14, 14)), (3, 1, 1, 2, (28, 28)), (3, 1, 1, 2, (12, 13)), (2, 1, 0, 3, (10, 11)),
           ((2, 3), (2, 1), (1, 0), (2, 3), (11, 14)), ((3, 2), (1, 2), (2, 1), (1, 2), (7, 9)), (2, 1, 0, 2, (8, 8))]


@pytest.mark.parametrize("kernel,dilation,padding,stride,image", WINDOWS)
def test_unfold_and_fold_are_convolutions_equal_to_torch(kernel, dilation, padding, stride, image):
    module = UnfoldFold(5, kernel_size=kernel, dilation=dilation, padding=padding, stride=stride).eval()
    example = (torch.randn(2, 5, *image),)
    gm = captured(module, example)
    result = windows(gm)
    assert result.counts["unfold_as_conv"] == 1 and result.counts["fold_as_conv"] == 1, result
    assert count(gm, "im2col") == 0 and count(gm, "col2im") == 0 and count(gm, "conv_transpose2d") == 1
    for got, want in zip(outputs(gm, example), module(*example)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # products by 1 and 0: exact
    assert not windows(gm).changed  # a second run finds nothing left


def test_unbatched_unfold_and_fold():
    class Unbatched(nn.Module):
        def forward(self, x):  # (C, H, W) → (C·K, L) → (C, H, W)
            return nn.functional.fold(nn.functional.unfold(x, 3, padding=1) * 2, x.shape[-2:], 3, padding=1)

    example = (torch.randn(4, 6, 7),)
    gm = captured(Unbatched(), example)
    assert windows(gm).counts["fold_as_conv"] == 1 and count(gm, "col2im") == 0
    torch.testing.assert_close(outputs(gm, example), Unbatched()(*example))


@pytest.mark.parametrize("kernel,padding,stride,image", [(3, 1, 2, (12, 13)), (3, 1, 1, (8, 8)), (2, 0, 3, (10, 11))])
def test_exported_without_gathers_and_executed_equal(kernel, padding, stride, image, tmp_path):
    module = UnfoldFold(8, kernel_size=kernel, padding=padding, stride=stride).eval()
    example = (torch.randn(1, 8, *image),)
    fast = ane_rewrite.optimize(module, example)
    assert not any((rank(n) or 0) > 4 for n in fast.graph.nodes)
    ml = ane_rewrite.export(fast, example, tmp_path / "fast.mlpackage", progress=False)
    mix = op_mix(program_ops(ml))
    assert mix["conv_transpose"] == 1 and not {k for k in mix if "gather" in k or "scatter" in k}, mix
    executed = ane_rewrite.execute(ml, example, "fp32")
    for got, want in zip(executed.values(), module(*example)):
        torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-3, atol=1e-3)


def test_an_input_with_no_recorded_shape_is_declined_with_the_reason():
    module = UnfoldFold(3, kernel_size=2, stride=2).eval()
    gm = captured(module, (torch.randn(1, 3, 4, 4),))
    for rule, op in ((unfold_as_conv, torch.ops.aten.im2col), (fold_as_conv, torch.ops.aten.col2im)):
        node = next(n for n in gm.graph.nodes if is_op(n, op))
        del node.args[0].meta["val"]
        declined = rule.match(node)
        assert declined.declined and "no recorded shape" in declined.reason, declined
