"""verify(reference, exported package): the saved ML Program executed against PyTorch; a fault
planted in the package is found and the op named."""
import numpy as np
import pytest

import ane_rewrite
from ane_rewrite.runtime import load
from tests import zoo


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    model, _ = zoo.bert()
    from ane_rewrite.frontend import models

    example = models.example_inputs(model, seq_len=16)
    fast = ane_rewrite.optimize(model, example)
    d = tmp_path_factory.mktemp("bert")
    ane_rewrite.export(model, example, d / "baseline.mlpackage", progress=False)
    ane_rewrite.export(fast, example, d / "rewritten.mlpackage", progress=False)
    return model, example, fast, d


def test_both_packages_execute_at_the_bars(bert):
    model, example, fast, d = bert
    reports = {}
    for side, source in (("baseline", None), ("rewritten", fast)):
        for precision in ("fp32", "fp16"):
            r = ane_rewrite.verify(model, d / f"{side}.mlpackage", example, precision=precision, source=source)
            assert r.ok and r.precision == precision and r.draws >= 3, r
            reports[side, precision] = r
    assert reports["rewritten", "fp32"].psnr >= 60
    assert reports["rewritten", "fp16"].psnr >= reports["baseline", "fp16"].psnr - 1.0


def _planted(path, out_path, plant):
    """Load the package's program, let ``plant(function)`` change it, save it unchanged otherwise."""
    import coremltools as ct

    exe_program, _ = __import__("ane_rewrite.runtime.program", fromlist=["load_program"]).load_program(path)
    fn = exe_program.functions["main"]
    with fn:
        name = plant(fn)
    ml = ct.convert(exe_program, convert_to="mlprogram", skip_model_load=True, pass_pipeline=ct.PassPipeline.EMPTY,
                    minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT32)
    ml.save(str(out_path))
    return name


def test_a_perturbed_weight_is_found_and_its_op_named(bert, tmp_path):
    from coremltools.converters.mil import Builder as mb

    model, example, fast, d = bert

    def plant(fn):
        conv = [op for op in fn.operations if op.op_type == "conv"][4]
        new = mb.const(val=(conv.weight.val * 1.25).astype(conv.weight.val.dtype), before_op=conv)
        conv.enclosing_block.replace_uses_of_var_after_op(anchor_op=new.op, old_var=conv.weight, new_var=new)
        return conv.outputs[0].name

    name = _planted(d / "rewritten.mlpackage", tmp_path / "bad.mlpackage", plant)
    report = ane_rewrite.verify(model, tmp_path / "bad.mlpackage", example, precision="fp32", source=fast)
    assert not report.ok, report
    assert report.divergence.startswith("op #") and f"conv '{name}'" in report.divergence, report.divergence


def test_two_channels_swapped_after_our_layer_norm_fusion_are_found(bert, tmp_path):
    from coremltools.converters.mil import Builder as mb

    model, example, fast, d = bert

    def plant(fn):
        norm = next(op for op in fn.operations if op.op_type == "layer_norm" and list(op.axes.val) == [1])
        out = norm.outputs[0]
        channels = out.shape[1]
        order = np.arange(channels, dtype=np.int32)
        order[[0, 5]] = order[[5, 0]]
        name = out.name
        out.name = name + "_unswapped"
        ops = list(fn.operations)
        swapped = mb.gather(x=out, indices=order, axis=1, before_op=ops[ops.index(norm) + 1], name=name)
        norm.enclosing_block.replace_uses_of_var_after_op(anchor_op=swapped.op, old_var=out, new_var=swapped)
        return name

    name = _planted(d / "rewritten.mlpackage", tmp_path / "swapped.mlpackage", plant)
    report = ane_rewrite.verify(model, tmp_path / "swapped.mlpackage", example, precision="fp32", source=fast)
    assert not report.ok, report
    assert f"'{name}'" in report.divergence and "PSNR" in report.divergence, report.divergence


def test_verify_accepts_an_mlmodel_and_a_loaded_executable(bert):
    import coremltools as ct

    model, example, fast, d = bert
    ml = ct.models.MLModel(str(d / "rewritten.mlpackage"), skip_model_load=True)
    a = ane_rewrite.verify(model, ml, example, draws=2)
    b = ane_rewrite.verify(model, load(d / "rewritten.mlpackage"), example, draws=2)
    assert a.ok and b.ok and a.psnr == b.psnr


def test_comparing_packages_takes_enough_draws_for_the_fp16_gap(tmp_path):
    """Values of one draw move together, so comparing two packages' fp16 PSNRs takes at least
    COMPARE_DRAWS draws, even where one draw already pools enough values (a ViT's 1000 logits)."""
    from ane_rewrite.runtime.verify import COMPARE_DRAWS, auto_draws, verify_packages

    from ane_rewrite.frontend import models

    model, _ = zoo.vit_tiny()
    example = models.example_inputs(model)
    fast = ane_rewrite.optimize(model, example)
    d = tmp_path
    ane_rewrite.export(model, example, d / "baseline.mlpackage", progress=False)
    ane_rewrite.export(fast, example, d / "rewritten.mlpackage", progress=False)
    assert auto_draws(load(d / "baseline.mlpackage")) < COMPARE_DRAWS
    reports = verify_packages(model, {"baseline": (d / "baseline.mlpackage", None),
                                      "rewritten": (d / "rewritten.mlpackage", fast)}, example, ("fp16",))
    assert {r["fp16"].draws for r in reports.values()} == {COMPARE_DRAWS}
    assert reports["rewritten"]["fp16"].psnr >= reports["baseline"]["fp16"].psnr - 1.0
