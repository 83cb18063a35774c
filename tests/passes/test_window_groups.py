"""passes/window_groups.py: the region between a window partition and its reverse runs with the
windows on axis 2 of the channels-first tensor — one block swap each way — when that needs fewer
transposes; a region whose ops mix the windows is left as it is."""
import timm
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.passes import default_pipeline
from ane_rewrite.rewrite.graph import shape

C, HW, WIN = 16, 8, 4


class Windows(nn.Module):
    """A conv map, split into WIN×WIN windows of tokens, a projection per token, the windows put
    back; ``mix`` subtracts the mean over the windows (their batch axis)."""

    def __init__(self, mix: bool = False):
        super().__init__()
        self.mix = mix
        self.conv, self.proj = nn.Conv2d(C, C, 3, padding=1), nn.Linear(C, C)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1)                                   # (B, H, W, C)
        b, n = y.shape[0], HW // WIN
        t = y.reshape(b, n, WIN, n, WIN, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, WIN * WIN, C)
        t = torch.nn.functional.gelu(self.proj(t))
        if self.mix:
            t = t - t.mean(dim=0, keepdim=True)
        t = t.reshape(b, n, n, WIN, WIN, C).permute(0, 1, 3, 2, 4, 5).reshape(b, HW, HW, C)
        return t.permute(0, 3, 1, 2) + x


def _transposes(model, example) -> int:
    return mil.summary(mil.program_ops(ane_rewrite.export(model, example)))["transpose"]


def test_windows_move_onto_axis_2_with_one_block_swap_each_way():
    module, example = Windows().eval(), (torch.randn(1, C, HW, HW),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert fast.ane_report.counts()["window_groups"].get("windows_on_axis_2") == 1
    convs = [n for n in fast.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert shape(convs[-1]) == (1, C, (HW // WIN) ** 2, WIN * WIN)  # (B, C, G, S)
    assert _transposes(fast, example) == 2 < _transposes(module, example)
    report = ane_rewrite.verify(module, fast, example, draws=2)
    assert report.ok and report.psnr >= 60, report
    assert not any(r.changed for r in default_pipeline(lower_every_attention=True)(fast).results)  # a fixpoint


def test_a_region_that_mixes_the_windows_is_left():
    module, example = Windows(mix=True).eval(), (torch.randn(1, C, HW, HW),)
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert not fast.ane_report.counts()["window_groups"].get("windows_on_axis_2")
    reasons = [d.reason for r in fast.ane_report.results if r.name == "window_groups" for d in r.declined]
    assert any("does not treat the windows and axis 2 alike" in why for why in reasons), reasons
    assert ane_rewrite.verify(module, fast, example, draws=2).ok


def test_swin_windows_and_shift_masks_are_regrouped():
    """Swin's window attention (per-head einsums, a relative-position bias shared by the
    windows, a shift mask per window) runs on (B, C, G, S): fewer transposes than captured."""
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                              embed_dim=32, depths=(2, 2), num_heads=(2, 4)).eval()
    fast = ane_rewrite.optimize(model, lower_every_attention=True)
    assert fast.ane_report.counts()["window_groups"].get("windows_on_axis_2") == 2  # stage 1: 4 windows
    s = mil.summary(mil.program_ops(ane_rewrite.export(fast, fast.example_inputs)))
    assert s["gather"] == 0 and s["max_rank"] <= 4 and s["linear"] == 0
    assert s["transpose"] < _transposes(model, fast.example_inputs)
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=2)
    assert report.ok and report.psnr >= 60, report
