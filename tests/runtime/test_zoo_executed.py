"""The test zoo's models (tests/zoo.py: text encoders and decoders with non-trivial norms, a ViT,
a ConvNet, an MLP block, padded masks), baseline and rewritten packages executed against
PyTorch: fp32 ≥ 60 dB, and the rewritten package's fp16 PSNR at most 1 dB below the baseline's."""
import pytest

import ane_rewrite
from ane_rewrite.frontend import models
from ane_rewrite.runtime.verify import verify_packages
from tests import zoo

CASES = {
    "distilbert": lambda: zoo.distilbert(),
    "bert-padded": lambda: (lambda m: (m, zoo.padded(m)))(zoo.bert()[0]),
    "gpt2": lambda: zoo.gpt2(),
    "clip-text": lambda: zoo.clip_text(),
    "convnext-atto": lambda: zoo.convnext_atto(),
    "mlp-block": lambda: zoo.mlp_block(),
}


@pytest.mark.parametrize("name", list(CASES))
def test_both_packages_execute_within_the_bars(name, tmp_path):
    model, example = CASES[name]()
    example = example if example is not None else models.example_inputs(model, seq_len=16)
    fast = ane_rewrite.optimize(model, example)
    for side, m in (("baseline", model), ("rewritten", fast)):
        ane_rewrite.export(m, example, tmp_path / f"{side}.mlpackage", progress=False)
    reports = verify_packages(model, {"baseline": (tmp_path / "baseline.mlpackage", None),
                                      "rewritten": (tmp_path / "rewritten.mlpackage", fast)}, example)
    for side in ("baseline", "rewritten"):
        assert reports[side]["fp32"].ok and reports[side]["fp32"].psnr >= 60, (side, reports[side]["fp32"])
        assert reports[side]["fp16"].ok, (side, reports[side]["fp16"])
    assert reports["rewritten"]["fp16"].psnr >= reports["baseline"]["fp16"].psnr - 1.0, reports
