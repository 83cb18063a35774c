"""passes/_patch_convs.py: the unfold of a feature map into non-overlapping patches and the fold
back (MobileViT v2's rank-6 reshape and permute) become one grouped convolution with one-hot
weights each, so the export has no transpose; where the convolution is estimated slower (wide
patches: P weights read per output) the permute is left to the block swaps, with the figures."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml.mil import op_mix, program_ops
from ane_rewrite.passes import windows
from ane_rewrite.passes._patch_convs import patches_as_conv
from ane_rewrite.rewrite.graph import aten, is_op, rank
from ane_rewrite.rewrite.rules import COST
from tests.helpers import captured, count


class Patches(nn.Module):
    """conv → unfold (B, C, P, N) → a token mixer over the patches → fold → conv."""

    def __init__(self, c: int, ph: int, pw: int):
        super().__init__()
        self.ph, self.pw = ph, pw
        self.conv_in, self.conv_out = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)
        self.mix = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        nh, nw = h // self.ph, w // self.pw
        y = self.conv_in(x).reshape(b, c, nh, self.ph, nw, self.pw).permute(0, 1, 3, 5, 2, 4)
        y = y.reshape(b, c, self.ph * self.pw, nh * nw)
        y = self.mix(y).softmax(dim=-1) * y
        y = y.reshape(b, c, self.ph, self.pw, nh, nw).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w)
        return self.conv_out(y)


@pytest.mark.parametrize("batch,ph,pw", [(1, 2, 2), (2, 2, 3)])
def test_unfold_and_fold_are_one_convolution_each(batch, ph, pw, tmp_path):
    module = Patches(16, ph, pw).eval()
    example = (torch.randn(batch, 16, 4 * ph, 4 * pw),)
    fast = ane_rewrite.optimize(module, example)
    assert fast.ane_report.counts()["windows"].get("patches_as_conv") == 2
    assert count(fast, "conv_transpose2d") == 1 and count(fast, "permute") == 0
    assert not any((rank(n) or 0) > 4 for n in fast.graph.nodes)
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
    ml = ane_rewrite.export(fast, example, tmp_path / "fast.mlpackage", progress=False)
    mix = op_mix(program_ops(ml))
    assert mix["transpose"] == 0 and mix["conv_transpose"] == 1, mix
    executed = ane_rewrite.execute(ml, example, "fp32")  # one-hot weights: exact in the package too
    torch.testing.assert_close(torch.as_tensor(next(iter(executed.values()))), module(*example),
                               rtol=1e-4, atol=1e-4)
    assert not windows(fast).counts  # a second run finds nothing left


def test_wide_patches_are_left_to_the_block_swaps_with_the_figures():
    module = Patches(64, 8, 8).eval()
    example = (torch.randn(1, 64, 64, 64),)
    fast = ane_rewrite.optimize(module, example)
    result = next(r for r in fast.ane_report.results if r.name == "windows")
    assert "patches_as_conv" not in result.counts and result.counts["low_rank_permute"] == 2
    # the reason, as the rule gives it on the graph as captured (low_rank_permute then takes the node)
    permutes = [n for n in captured(module, example).graph.nodes if is_op(n, aten.permute)]
    declined = [patches_as_conv.match(n) for n in permutes]
    assert len(declined) == 2 and all(m.declined and m.kind == COST and "estimated slower" in m.reason
                                      for m in declined)
    verdict = ane_rewrite.verify(module, fast, example, draws=1)
    assert verdict.ok and verdict.psnr >= 60, verdict
