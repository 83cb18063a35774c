"""ane_rewrite/runtime/hazards.py: fp16 overflow, underflow and NaN, named where they start."""
import torch

import ane_rewrite


class Hot(torch.nn.Module):
    def forward(self, x):
        big = (x * 300.0) * (x * 300.0)      # beyond 65504 where |x| > 0.85: overflow in fp16
        tiny = x * 1e-9                      # below fp16's range: underflow
        return big.sum(-1, keepdim=True) + tiny, (x * 2.0).exp()


def test_the_fp16_hazard_report_names_overflow_and_underflow_where_they_start(tmp_path):
    example = (torch.full((1, 8), 0.5) + torch.arange(8.0) / 8,)
    ane_rewrite.export(Hot().eval(), example, tmp_path / "hot.mlpackage", progress=False)
    report = ane_rewrite.fp16_hazards(tmp_path / "hot.mlpackage", example)
    kinds = report.kinds()
    assert kinds.get("overflow", 0) >= 1 and kinds.get("underflow", 0) >= 1, report
    overflow = next(h for h in report.origins if h.kind == "overflow")
    assert overflow.location.startswith("op #") and overflow.fp32_max > 65504, overflow
    assert not any(h.origin and "exp" in h.location for h in report.hazards)  # exp(2x) stays in range
    carried = [h for h in report.hazards if h.kind == "overflow" and not h.origin]
    assert carried, "the sum that reads the overflow carries it"
    fp16 = ane_rewrite.verify(Hot().eval(), tmp_path / "hot.mlpackage", example, draws=1, precision="fp16")
    assert not fp16.ok  # infinities at the output


def test_a_clean_model_has_no_hazard(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.LayerNorm(32)).eval()
    example = (torch.randn(2, 16),)
    ane_rewrite.export(model, example, tmp_path / "m.mlpackage", progress=False)
    report = ane_rewrite.fp16_hazards(tmp_path / "m.mlpackage", example)
    assert report.origins == [] and report.values_checked > 0 and "no fp16 hazard" in str(report)
