"""ane_rewrite.execute: saved packages run on Linux, in fp32 and fp16; inputs bound by name or
order; compressed weights decompressed; clear errors for what it cannot run."""
import numpy as np
import pytest
import torch
from coremltools.converters.mil import Builder as mb

import ane_rewrite
from ane_rewrite.errors import ExecutionError
from ane_rewrite.runtime import compile_program, load
from tests.runtime.mil_programs import ours, program


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2, 2)
        return self.head(y.mean((2, 3))).softmax(-1), y


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    torch.manual_seed(0)
    model = ConvNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("convnet") / "m.mlpackage"
    example = (torch.randn(1, 3, 16, 16),)
    ane_rewrite.export(model, example, path, progress=False)
    return model, example, path


def test_execute_returns_every_output_by_name_close_to_pytorch(convnet):
    model, example, path = convnet
    with torch.no_grad():
        expected = model(*example)
    for precision, tol in (("fp32", 2e-3), ("fp16", 2e-2)):
        out = ane_rewrite.execute(path, example, precision=precision)
        assert isinstance(out, dict) and len(out) == 2
        probs, features = out.values()
        assert isinstance(probs, np.ndarray) and probs.shape == (1, 4)
        np.testing.assert_allclose(probs, expected[0].numpy(), atol=tol)
        np.testing.assert_allclose(features, expected[1].numpy(), atol=tol * 10)


def test_inputs_by_the_programs_names_or_in_order(convnet):
    model, example, path = convnet
    exe = load(path)
    (name,) = exe.input_names
    by_name = exe.run({name: example[0].numpy()}, "fp32")
    in_order = exe.run(example, "fp32")
    assert all(torch.equal(a, b) for a, b in zip(by_name.values(), in_order.values()))


def test_fp16_rounds_what_the_program_declares_fp16(convnet):
    _, example, path = convnet
    exe = load(path)
    seen = {}
    exe.run(example, "fp16", observe=lambda step, values: seen.update(zip(step.outputs, values)))
    fp16 = [n for n, o in exe.compiled.declared.items() if o.dtype == "fp16" and n in seen]
    assert fp16
    for name in fp16:
        assert torch.equal(seen[name], seen[name].half().float()), name  # representable in fp16
    out32, out16 = exe.run(example, "fp32"), exe.run(example, "fp16")
    assert any(not torch.equal(a, b) for a, b in zip(out32.values(), out16.values()))


def test_bad_inputs_are_named(convnet):
    _, example, path = convnet
    exe = load(path)
    with pytest.raises(ExecutionError, match=r"input .* has shape \(1, 3, 8, 8\); .* takes \(1, 3, 16, 16\)"):
        exe.run((torch.randn(1, 3, 8, 8),))
    with pytest.raises(ExecutionError, match="takes inputs"):
        exe.run((example[0], example[0]))
    with pytest.raises(ExecutionError, match="precision must be one of"):
        exe.run(example, "int8")
    with pytest.raises(ExecutionError, match="no Core ML model at"):
        load("/nonexistent/m.mlpackage")


def test_an_op_without_implementation_is_named_with_its_position():
    prog = program(lambda x: mb.add(x=x, y=mb.random_normal(shape=np.array([2, 3], np.int32))),
                   x=np.zeros((2, 3), np.float32))
    with pytest.raises(ExecutionError, match=r"op #\d+ random_normal '.*'.*'random_normal' has no implementation"):
        compile_program(prog, "test")


def test_control_flow_is_refused_by_name():
    def build(x):
        pred = mb.greater(x=mb.reduce_sum(x=x), y=0.0)
        return mb.cond(pred=pred, _true_fn=lambda: mb.mul(x=x, y=2.0), _false_fn=lambda: mb.mul(x=x, y=3.0))

    with pytest.raises(ExecutionError, match=r"cond .* nested blocks \(control flow\)"):
        compile_program(program(build, x=np.ones((2,), np.float32)))


def test_an_op_that_fails_names_itself():
    with pytest.raises(ExecutionError, match=r"op #\d+ gather .* failed on inputs"):
        ours(lambda x, i: mb.gather(x=x, indices=i, axis=0), x=np.zeros((3, 2), np.float32),
             i=np.array([7], np.int32))


@pytest.mark.parametrize("compress", ["palettize", "quantize", "prune"])
def test_compressed_weights_are_decompressed(tmp_path, compress):
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16)).eval()
    example = (torch.randn(2, 64),)
    ml = ane_rewrite.export(model, example, progress=False)
    config = {"palettize": (cto.palettize_weights, cto.OpPalettizerConfig(nbits=6, mode="uniform", weight_threshold=0)),
              "quantize": (cto.linear_quantize_weights, cto.OpLinearQuantizerConfig(weight_threshold=0)),
              "prune": (cto.prune_weights, cto.OpMagnitudePrunerConfig(target_sparsity=0.1, weight_threshold=0))}
    fn, op_config = config[compress]
    compressed = fn(ml, cto.OptimizationConfig(global_config=op_config))
    compressed.save(str(tmp_path / "c.mlpackage"))
    exe = load(tmp_path / "c.mlpackage")
    spec_ops = {op.type for f in ct.models.MLModel(str(tmp_path / "c.mlpackage"), skip_model_load=True)
                .get_spec().mlProgram.functions.values() for b in f.block_specializations.values()
                for op in b.operations}
    assert any(t.startswith("constexpr_") for t in spec_ops)
    got = next(iter(exe.run(example, "fp32").values()))
    with torch.no_grad():
        ref = model(*example)
    psnr = 20 * torch.log10(ref.abs().max() / (ref - got).square().mean().sqrt())
    assert psnr > 30, psnr  # the compression's own error (6 bits, int8, 10 % zeros), nothing more
