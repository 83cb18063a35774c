"""ane_rewrite.export, and acceptance 3 on the realistic-size DistilBERT (seq 128)."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.frontend import models
from ane_rewrite.errors import ExportError
from tests.zoo import distilbert, mlp_block


@pytest.fixture(scope="module")
def distilbert_base_export(tmp_path_factory):
    """DistilBERT with an SST-2 head, default config (6 layers, 768 wide), seq 128."""
    model = models.default_model()
    fast = ane_rewrite.optimize(model, seq_len=128, lower_every_attention=True)
    path = tmp_path_factory.mktemp("export") / "rewritten.mlpackage"
    ane_rewrite.export(fast, fast.example_inputs, path)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    return mil.program_ops(path), linears


def test_distilbert_every_linear_is_a_4d_conv(distilbert_base_export):
    ops, linears = distilbert_base_export
    s = mil.summary(ops)
    assert linears == 38
    assert s["linear"] == 0
    assert s["conv"] == s["conv_4d"] == 38


def test_distilbert_op_mix(distilbert_base_export):
    """Issue 3, acceptance 2: Apple's hand-written DistilBERT, exported here, has 539 ops,
    7 transposes, 5 reshape/expand/squeeze, 72 softmax, 38 4-D convs, 0 linear."""
    ops, _ = distilbert_base_export
    s, mix = mil.summary(ops), mil.op_mix(ops)
    assert s["linear"] == 0 and s["conv_4d"] == 38
    assert mix["softmax"] == 72 and mix["einsum"] == 144   # 6 layers × 12 heads
    assert s["transpose"] <= 7
    assert s["reshape"] <= 8
    assert s["ops"] <= 539
    assert mix["gather_nd"] == 0 and mix["gather"] <= 2     # the embedding lookups only
    assert s["max_rank"] <= 4
    assert mix["layer_norm"] == 13 and mix["reduce_mean"] == 0  # 6 × 2 + the embeddings' norm


def test_distilbert_no_transpose_between_projections(distilbert_base_export):
    """Between the attention output projection and the next layer's q/k/v projections (and
    around the FFN) the glue is adds, norms and activations: no layout copy."""
    ops, _ = distilbert_base_export
    glue = mil.ops_between(ops)
    assert len(glue) == 38
    with_glue = [name for name, between in glue.items() if between]
    assert len(with_glue) >= 6 * 3  # out proj → FFN, FFN up → down, FFN down → next layer
    copies = {name: [o.type for o in between if o.type in ("transpose",) + mil.RESHAPE_FAMILY]
              for name, between in glue.items()}
    assert all(not c for c in copies.values()), copies


def test_token_inputs_are_int32_with_static_shapes(tmp_path):
    model, _ = distilbert()
    example = models.example_inputs(model, seq_len=16, batch=2)
    mlmodel = ane_rewrite.export(model, example, tmp_path / "m.mlpackage")
    inputs = {i.name: i.type.multiArrayType for i in mlmodel.get_spec().description.input}
    assert set(inputs) == {"input_ids", "attention_mask"}
    for arr in inputs.values():
        assert list(arr.shape) == [2, 16]
        assert arr.dataType == arr.INT32
    assert (tmp_path / "m.mlpackage").is_dir()


def test_export_of_original_and_rewritten_mlp(tmp_path):
    model, example = mlp_block()
    base = mil.summary(mil.program_ops(ane_rewrite.export(model, example)))
    fast = mil.summary(mil.program_ops(ane_rewrite.export(ane_rewrite.optimize(model, example), example)))
    assert (base["linear"], base["conv"]) == (4, 0)
    assert (fast["linear"], fast["conv_4d"]) == (0, 4)
    assert fast["transpose"] <= 2  # one conversion in, one out


def test_an_op_coremltools_cannot_convert_is_an_export_error():
    class Bessel(torch.nn.Module):
        def forward(self, x):
            return torch.special.i0(x)

    with pytest.raises(ExportError, match="Unsupported fx node i0"):
        ane_rewrite.export(Bessel(), (torch.randn(3),))


def test_distilbert_seq512_batch8_exports_chunked_and_equivalent(tmp_path):
    """Issue 3, acceptance 3: 1 MiB of fp16 logits per chunk → 128 queries per chunk at
    batch 8, seq 512: every head's softmax runs in 4 chunks."""
    model = models.default_model()
    fast = ane_rewrite.optimize(model, seq_len=512, batch=8)
    assert fast.ane_report.counts()["softmax"]["chunk_queries"] == 72
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=2)
    assert report.ok, report
    ops = mil.program_ops(ane_rewrite.export(fast, fast.example_inputs, tmp_path / "big.mlpackage"))
    s, mix = mil.summary(ops), mil.op_mix(ops)
    assert mix["softmax"] == 72 * 4 and mix["einsum"] == 2 * 72 * 4
    assert s["linear"] == 0 and s["conv_4d"] == 38 and s["max_rank"] <= 4 and mix["gather_nd"] == 0


def test_convnext_atto_exports_without_layout_copies():
    """Its pooled head needs the as_strided converter (compat); the rewritten program keeps
    every block in NCHW: no transpose at all (the baseline has 34)."""
    from tests.zoo import convnext_atto

    model, _ = convnext_atto()
    fast = ane_rewrite.optimize(model)
    s = mil.summary(mil.program_ops(ane_rewrite.export(fast, fast.example_inputs)))
    assert s["linear"] == 0 and s["transpose"] == 0 and s["max_rank"] <= 4


def test_swin_exports_without_gathers_or_rank5():
    """Shifted windows: the rolls become slices (no gather), window partitions rank-≤4 transposes."""
    import timm

    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                              embed_dim=32, depths=(2, 2), num_heads=(2, 4)).eval()
    fast = ane_rewrite.optimize(model, lower_every_attention=True)
    s = mil.summary(mil.program_ops(ane_rewrite.export(fast, fast.example_inputs)))
    assert s["gather"] == 0 and s["max_rank"] <= 4 and s["linear"] == 0
    assert s["softmax"] == 2 * 2 + 2 * 4  # every window attention lowered: 2 blocks × 2 heads, 2 × 4
