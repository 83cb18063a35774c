"""passes/_layout_cost.py: views and permutes before a conversion as one movement of the
channels-first tensor, when its copies move fewer padded bytes.

    conv ─ permute(0,2,3,1) ─ view₆ ─ permute₆ ─ view ─ linear      (a window partition)
        → conv ─ reshape ─ block swaps ─ reshape ─ conv               (wide windows)
"""
import pytest
import torch
from torch import nn

from ane_rewrite.hardware import shape_bytes
from ane_rewrite import passes
from ane_rewrite.passes._layout_cost import _copy_bytes
from tests.helpers import captured, count, outputs


def _close(gm, module, example):
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)


def test_a_copy_costs_its_padded_bytes_and_a_view_that_keeps_the_last_axis_costs_nothing():
    src, dst = (1, 64, 1, 7), (1, 7, 1, 64)
    assert _copy_bytes(src, dst, [0, 3, 2, 1]) == shape_bytes(src, padded=True) + shape_bytes(dst, padded=True)
    assert shape_bytes(src, padded=True) == 64 * 64  # 7 fp16 values pad to 64 bytes
    assert _copy_bytes((2, 3, 64), (6, 64)) == 0     # merges leading axes: no copy
    assert _copy_bytes((1, 8, 1, 64), (1, 8, 1, 64), [0, 2, 1, 3]) == 0  # last axis stays


class WindowMlp(nn.Module):
    """Conv → channels-last → rank-6 window partition → linear per window → reverse →
    channels-first, shifted by a roll (Swin without the attention)."""

    def __init__(self, c=8, window=(2, 3), shift=0):
        super().__init__()
        self.conv, self.fc, self.window, self.shift = nn.Conv2d(c, c, 1), nn.Linear(c, c), window, shift

    def forward(self, x_BCHW):
        y = self.conv(x_BCHW).permute(0, 2, 3, 1)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        b, h, w, c = y.shape
        wh, ww = self.window
        win = y.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, c)
        win = self.fc(win).view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.shift:
            win = torch.roll(win, (self.shift, self.shift), (1, 2))
        return x_BCHW + win.permute(0, 3, 1, 2)


@pytest.mark.parametrize("shift", [0, 1])
def test_window_partition_moves_the_channels_first_tensor(shift):
    """Windows 32 wide: partition and reverse as block swaps of the (B, C, H, W) map move fewer
    padded bytes than three transposes of the channels-last one."""
    module, example = WindowMlp(window=(2, 32), shift=shift).eval(), (torch.randn(2, 8, 4, 64),)
    gm = captured(module, example)
    result = passes.default_pipeline()(gm)
    assert result.counts()["layout"]["movement_in_layout"] == 2  # partition and reverse
    if shift:
        assert sum(r.get("sink_cat", 0) for r in result.counts().values()) >= 2
    # each of partition and reverse: two block swaps of the channels-first map, no conversions;
    # then ``window_groups`` puts the windows on axis 2: one block swap each
    assert result.counts()["window_groups"]["windows_on_axis_2"] == 1
    assert count(gm, "permute") == 2 and count(gm, "roll") == 0
    _close(gm, module, example)


def test_narrow_windows_stay_channels_last():
    """Windows 3 wide: block swaps of the channels-first map would leave a last axis of 3
    (padded to 32 elements on the ANE); the channels-last partition is kept."""
    module, example = WindowMlp(window=(2, 3)).eval(), (torch.randn(2, 8, 4, 6),)
    gm = captured(module, example)
    result = passes.default_pipeline()(gm)
    assert "movement_in_layout" not in result.counts()["layout"]
    # ``window_groups`` trades the padded bytes for transposes: windows on axis 2, one swap each way
    assert result.counts()["window_groups"]["windows_on_axis_2"] == 1 and count(gm, "permute") == 2
    _close(gm, module, example)
