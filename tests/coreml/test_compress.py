"""compress: an export's weights palettized (4, 6 bits) or quantized (int8); the package is
smaller, holds constexpr weights the runtime decompresses, and computes the function up to the
compression's own error; small weights stay fp16; a kind it does not know is named."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.coreml.compress import COMPRESSIONS, weights_bytes
from ane_rewrite.errors import InputError
from ane_rewrite.runtime import load
from ane_rewrite.runtime.program import load_program
from tests import zoo


@pytest.mark.parametrize("kind", COMPRESSIONS)
def test_each_compression_shrinks_the_weights_and_keeps_the_function(kind, tmp_path):
    model, example = zoo.mlp_block()
    ane_rewrite.export(model, example, tmp_path / "full.mlpackage", progress=False)
    ane_rewrite.export(model, example, tmp_path / "c.mlpackage", progress=False, compress=kind)
    full, small = weights_bytes(tmp_path / "full.mlpackage"), weights_bytes(tmp_path / "c.mlpackage")
    bits = {"palettize4": 4, "palettize6": 6, "int8": 8}[kind]
    assert small < full * (bits / 16 + 0.15), (full, small)
    program, _ = load_program(tmp_path / "c.mlpackage")
    ops = [op.op_type for op in program.functions["main"].operations]
    assert sum(t.startswith("constexpr_") for t in ops) == 4  # the four 48×48 projections; biases stay fp16
    got = next(iter(load(tmp_path / "c.mlpackage").run(example, "fp32").values()))
    with torch.no_grad():
        ref = model(*example)
    psnr = 20 * torch.log10(ref.abs().max() / (ref - got).square().mean().sqrt())
    assert psnr > {4: 15, 6: 25, 8: 35}[bits], psnr


def test_an_unknown_compression_is_named():
    model, example = zoo.mlp_block()
    with pytest.raises(InputError, match="compress must be one of palettize4, palettize6, int8"):
        ane_rewrite.export(model, example, compress="palettize3")
