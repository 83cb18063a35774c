"""passes/layout.py, ``narrow_rows``: a linear on the windows of a partition (B·nW, h, w, C), rows
narrower than one aligned last axis, runs on the windows' pixels as tokens (N, C, 1, h·w), not
(N, C, h, w), whose every row of w would be padded to 32 elements; a map a spatial op reads as
(B, C, H, W) (ConvNeXt's 7×7 stage) keeps that form."""
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.rewrite.graph import aten, is_op, shape
from tests.helpers import count

B, H, W, C, WS = 1, 16, 16, 32, 8


class Windows(nn.Module):
    """A channels-last map cut into 8×8 windows, a linear on each window's pixels, put back."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(C, C)

    def forward(self, x):
        b, h, w, c = x.shape
        win = x.reshape(b, h // WS, WS, w // WS, WS, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, WS, WS, c)
        y = self.fc(win)
        y = y.reshape(b, h // WS, w // WS, WS, WS, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return x + y


class DepthwiseThenLinear(nn.Module):
    """ConvNeXt's block on a 7×7 map: a depthwise conv on (B, C, H, W), then a linear per pixel."""

    def __init__(self):
        super().__init__()
        self.dw, self.fc = nn.Conv2d(C, C, 7, padding=3, groups=C), nn.Linear(C, C)

    def forward(self, x):
        return x + self.fc(self.dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _pointwise_inputs(fast) -> list[tuple]:
    return [shape(n.args[0]) for n in fast.graph.nodes if is_op(n, aten.conv2d) and shape(n.args[1])[-1] == 1]


def test_a_linear_on_narrow_windows_runs_on_their_pixels_as_tokens():
    module = Windows().eval()
    example = (torch.randn(B, H, W, C),)
    fast = ane_rewrite.optimize(module, example)
    assert count(fast, "linear") == 0
    assert _pointwise_inputs(fast) == [(B * (H // WS) * (W // WS), C, 1, WS * WS)]
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict


def test_a_map_a_spatial_op_reads_keeps_its_rows():
    module = DepthwiseThenLinear().eval()
    example = (torch.randn(B, C, 7, 7),)
    fast = ane_rewrite.optimize(module, example)
    assert _pointwise_inputs(fast) == [(B, C, 7, 7)]
    verdict = ane_rewrite.verify(module, fast, example, draws=2)
    assert verdict.ok and verdict.psnr >= 60, verdict
