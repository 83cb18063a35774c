"""ane_rewrite/coreml/compat.py: the coremltools 9.0 converter gaps, measured and closed."""
import subprocess
import sys
import textwrap

import pytest
import torch

import ane_rewrite
from ane_rewrite.coreml import compat, mil

MODULES = textwrap.dedent("""
    import torch
    class NewOnes(torch.nn.Module):
        def forward(self, x): return x + x.new_ones(x.shape)
    class Alias(torch.nn.Module):
        def forward(self, x): return torch.ops.aten.alias(x) * 2
    class And(torch.nn.Module):
        def forward(self, x): return ((x > 0) & (x < 1)).to(torch.float32)
    class Where(torch.nn.Module):
        def forward(self, x): return torch.where(x > 0, x, 0.5)
    class AsStrided(torch.nn.Module):
        def forward(self, x): return torch.as_strided(x + 1, (1, 6, 1), (6, 1, 6)) * 2
""")
namespace: dict = {}
exec(MODULES, namespace)
CASES = {  # module → (ATen op left in the graph, MIL op the converter emits)
    "NewOnes": ("new_ones", None),
    "Alias": ("alias", None),
    "And": ("__and__", "logical_and"),
    "Where": ("where", "select"),
    "AsStrided": ("as_strided", "reshape"),
}


def _convert(module):
    import coremltools as ct

    program = torch.export.export(module, (torch.randn(2, 3),)).run_decompositions({})
    assert any(CASES[type(module).__name__][0] in str(n.target) for n in program.graph.nodes)
    return ct.convert(program, convert_to="mlprogram", skip_model_load=True)


def test_the_gaps_are_real_without_compat():
    """A fresh interpreter, no compat: coremltools 9.0 refuses every one of these graphs."""
    script = MODULES + textwrap.dedent("""
        import warnings; warnings.filterwarnings("ignore")
        import coremltools as ct
        failed = []
        for cls in (NewOnes, Alias, And, Where, AsStrided):
            ep = torch.export.export(cls(), (torch.randn(2, 3),)).run_decompositions({})
            try:
                ct.convert(ep, convert_to="mlprogram", skip_model_load=True)
            except NotImplementedError as exc:
                failed.append(cls.__name__)
        print("FAILED", " ".join(failed))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "FAILED NewOnes Alias And Where AsStrided" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_installed_converters_convert(name):
    compat.install()
    assert compat.missing_ops() == []
    mlmodel = _convert(namespace[name]())
    expected = CASES[name][1]
    if expected:
        assert mil.op_mix(mil.program_ops(mlmodel))[expected] == 1


def test_install_is_idempotent():
    compat.install()
    assert compat.install() == []


def test_as_strided_that_is_no_reshape_is_refused_with_its_reason():
    import coremltools as ct

    class Overlapping(torch.nn.Module):
        def forward(self, x):
            return torch.as_strided(x + 1, (2, 2), (1, 1)) * 2  # overlapping windows

    compat.install()
    program = torch.export.export(Overlapping(), (torch.randn(2, 3),)).run_decompositions({})
    with pytest.raises(Exception, match="is not a reshape of its input"):
        ct.convert(program, convert_to="mlprogram", skip_model_load=True)


def test_max_pool_with_the_default_stride_converts_and_executes(tmp_path):
    """``F.max_pool2d(x, 2)``: torch.export leaves the default stride out; coremltools needs it."""
    class Pool(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.max_pool2d(x, 2) + torch.nn.functional.max_pool2d(x, 3, 1, 1)[..., ::2, ::2]

    example = (torch.randn(1, 3, 8, 8),)
    ane_rewrite.export(Pool(), example, tmp_path / "p.mlpackage", progress=False)
    report = ane_rewrite.verify(Pool(), tmp_path / "p.mlpackage", example, draws=2)
    assert report.ok and report.psnr >= 60, report


def test_sdpa_with_a_bool_mask_gives_torchs_zeros_for_a_query_with_no_key(tmp_path):
    """A padded query under a causal mask keeps no key: torch's sdpa gives zeros there."""
    class Masked(torch.nn.Module):
        def forward(self, q, k, v, pad):
            keep = (pad[:, None, None, :] != 0) & torch.ones(6, 6, dtype=torch.bool).tril()
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)

    q, k, v = (torch.randn(2, 2, 6, 4) for _ in range(3))
    pad = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # left padding: two queries keep no key
    expected = Masked()(q, k, v, pad)
    assert bool((expected[0, :, :2] == 0).all())
    ane_rewrite.export(Masked(), (q, k, v, pad), tmp_path / "m.mlpackage", progress=False)
    (out,) = ane_rewrite.execute(tmp_path / "m.mlpackage", {"q": q, "k": k, "v": v, "pad": pad}, "fp32").values()
    assert abs(out - expected.numpy()).max() < 1e-5
