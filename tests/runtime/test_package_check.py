"""check_package: a package executed on inputs drawn from its own input types — token ids below
the vocabulary their gather indexes — fp16 against its own fp32, fp32 against another package."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.runtime import load
from ane_rewrite.runtime.package_check import check_package, draw_package_inputs, index_bounds
from tests.helpers import exported_pair
from tests.zoo import distilbert


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("package_check")
    model, fast = exported_pair(folder)
    with torch.no_grad():  # the same architecture with other weights: a different function
        other = distilbert()[0]
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ane_rewrite.export(other, fast.example_inputs, folder / "other.mlpackage", progress=False)
    return model, folder


def test_token_ids_are_drawn_below_the_vocabulary_and_masks_are_0_or_1(packages):
    model, folder = packages
    exe = load(folder / "rewritten.mlpackage")
    assert index_bounds(exe.compiled) == {"input_ids": model.config.vocab_size}
    for i in range(3):
        inputs = draw_package_inputs(exe, i)
        assert inputs["input_ids"].shape == (1, 16) and 0 <= int(inputs["input_ids"].min())
        assert int(inputs["input_ids"].max()) < model.config.vocab_size and int(inputs["input_ids"].max()) > 1
        assert set(inputs["attention_mask"].unique().tolist()) <= {0, 1}


def test_the_rewritten_package_computes_the_baselines_function_and_another_does_not(packages):
    _, folder = packages
    same = check_package(folder / "rewritten.mlpackage", draws=2, against=folder / "baseline.mlpackage")
    assert same.draws == 2 and same.fp16_psnr > 40 and same.against_psnr > 60 and not same.hazards.origins
    different = check_package(folder / "other.mlpackage", draws=2, against=folder / "baseline.mlpackage")
    assert different.against_psnr < 40 < different.fp16_psnr
