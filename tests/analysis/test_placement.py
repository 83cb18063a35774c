"""ane_rewrite.analysis.placement: each rule of the table fires on the op it describes and not on its
negative case (synthetic MIL programs; the end-to-end cases are in tests/analysis/test_report.py)."""
from pathlib import Path

import pytest

from ane_rewrite import hardware
from ane_rewrite.analysis import placement
from ane_rewrite.analysis.report import _findings
from tests.analysis.programs import P
from tests.helpers import doc_anchors


def test_every_rule_has_a_source_in_the_ane_document_and_a_severity():
    ids = [r.id for r in placement.RULES]
    assert len(ids) == len(set(ids))
    anchors = doc_anchors((Path(__file__).resolve().parents[2] / hardware.DOC).read_text())
    for r in (*placement.RULES, placement.FLEXIBLE_INPUT, placement.WEIGHTS_LIMIT):
        assert r.source.startswith(hardware.DOC + "#") and r.severity in ("error", "off_ane", "slow") and r.consequence
        assert r.source[len(hardware.DOC) + 1:].split(":")[0].split(",")[0] in anchors, r.source


def test_fp32_and_clean_fp16():
    p = P()
    p.op("relu", (1, 64, 1, 128), x="x")
    assert p.rules() == set()
    p.op("relu", (1, 64, 1, 128), dtype="FLOAT32", x="x")
    assert p.rules() == {"fp32"}


def test_integer_and_boolean_tensors_run_on_the_cpu():
    p = P()
    mask = p.op("cast", (1, 64, 1, 128), dtype="BOOL", x="x")
    p.op("select", (1, 64, 1, 128), cond=mask, a="x", b="x")  # fp16 out, a bool mask in
    flagged = [f for f in _findings(p.program()) if f.rule == "int_or_bool"]
    assert [f.type for f in flagged] == ["cast", "select"]
    assert "bool output" in flagged[0].reason and "bool input" in flagged[1].reason
    assert all(f.severity == "off_ane" for f in flagged)
    clean = P()
    clean.op("relu", (1, 64, 1, 128), x="x")
    clean.const("shape", (1, 64), shape=(2,))  # an integer constant is a parameter, not a tensor computed
    clean.op("reshape", (1, 64, 128), x="x", shape="shape")
    assert "int_or_bool" not in clean.rules()


@pytest.mark.parametrize("type_,rule", [("cond", "control_flow"), ("while_loop", "control_flow"),
                                        ("topk", "unsupported_op"), ("cumsum", "unsupported_op"),
                                        ("lstm", "unsupported_op"), ("gather_nd", "gather"),
                                        ("scatter", "gather"),
                                        ("constexpr_blockwise_shift_scale", "blockwise_quantisation")])
def test_ops_with_no_ane_implementation(type_, rule):
    p = P()
    p.op(type_, (1, 64, 1, 128), x="x")
    assert rule in p.rules()


def test_ranks():
    p = P()
    p.op("reshape", (1, 64, 1, 2, 64), x="x")
    assert "rank_5" in p.rules() and "rank_above_5" not in p.rules()
    p.op("reshape", (1, 2, 32, 1, 2, 64), x="x")
    assert "rank_above_5" in p.rules()


def test_dims_above_16384_in_a_product():
    p = P()
    w = p.const("w", shape=(20000, 64), dtype="FLOAT16")
    p.op("conv", (1, 20000, 1, 128), x="x", weight=w)
    assert "dim_above_16384" in p.rules()
    q = P()
    q.op("relu", (1, 20000), x="x")
    assert "dim_above_16384" not in q.rules()  # not a matmul/conv/gather


def test_conv_dilation_kernel_width_and_conv3d():
    p = P()
    w = p.const("w", shape=(64, 64, 1, 1), dtype="FLOAT16")
    p.op("conv", (1, 64, 1, 128), x="x", weight=w, dilations=p.const("d", (1, 1), (2,)))
    assert "conv_kernel" not in p.rules()
    p.op("conv", (1, 64, 1, 128), x="x", weight=w, dilations=p.const("d2", (1, 2), (2,)))
    assert "conv_kernel" in p.rules()
    q = P()
    q.op("conv", (1, 64, 1, 128), x="x", weight=q.const("w", shape=(64, 1, 1, 15), dtype="FLOAT16"))
    assert "conv_kernel" in q.rules()
    r = P()
    r.op("conv", (1, 64, 1, 1, 128), x="x", weight=r.const("w", shape=(64, 64, 1, 1, 3), dtype="FLOAT16"))
    assert "conv3d" in r.rules() and "conv_kernel" not in r.rules()


def test_pooling_and_upsampling_limits():
    p = P()
    p.op("max_pool", (1, 64, 1, 64), x="x", kernel_sizes=p.const("k", (1, 3), (2,)), strides=p.const("s", (1, 2), (2,)))
    assert "pooling" not in p.rules()
    p.op("avg_pool", (1, 64, 1, 32), x="x", kernel_sizes=p.const("k2", (1, 3), (2,)), strides=p.const("s2", (1, 4), (2,)))
    assert "pooling" in p.rules()
    q = P()
    q.op("upsample_nearest_neighbor", (1, 64, 2, 256), x="x", scale_factor_height=q.const("h", (2.0,)),
         scale_factor_width=q.const("w", (2.0,)))
    assert "upsample" not in q.rules()
    q.op("upsample_bilinear", (1, 64, 4, 512), x="x", scale_factor_height=q.const("h2", (4.0,)),
         scale_factor_width=q.const("w2", (4.0,)))
    assert "upsample" in q.rules()


def test_softmax_axis():
    p = P()
    p.op("softmax", (1, 64, 1, 128), x="x", axis=p.const("a", (1,)))
    assert "softmax_axis" not in p.rules()
    p.op("softmax", (1, 64, 1, 128), x="x", axis=p.const("b", (-1,)))
    assert "softmax_axis" in p.rules()


def test_batched_attention_needs_two_activations():
    p = P(inputs=(("q", (1, 12, 128, 64)), ("k", (1, 12, 128, 64))))
    p.op("matmul", (1, 12, 128, 128), x="q", y="k")
    assert "batched_attention" in p.rules()
    q = P(inputs=(("q", (1, 12, 128, 64)),))
    q.op("matmul", (1, 12, 128, 32), x="q", y=q.const("w", shape=(64, 32), dtype="FLOAT16"))
    assert "batched_attention" not in q.rules() and "channels_last_linear" in q.rules()


@pytest.mark.parametrize("shape,flagged", [((1, 128, 768), True), ((128, 768), True), ((1, 768), False)])
def test_channels_last_linear(shape, flagged):
    p = P(inputs=(("t", shape),))
    p.op("linear", (*shape[:-1], 32), x="t", weight=p.const("w", shape=(32, 768), dtype="FLOAT16"))
    assert ("channels_last_linear" in p.rules()) == flagged


def test_layout_copies_touch_the_last_axis():
    p = P()
    p.op("transpose", (1, 1, 64, 128), x="x", perm=p.const("p", (0, 2, 1, 3)))
    assert "layout_copy" not in p.rules()  # the last axis stays: no copy of it
    p.op("transpose", (1, 128, 1, 64), x="x", perm=p.const("p2", (0, 3, 2, 1)))
    assert "layout_copy" in p.rules()
    q = P()
    q.op("reshape", (1, 4, 16, 128), x="x")
    assert "layout_copy" not in q.rules()
    q.op("reshape", (1, 64, 2, 64), x="x")
    assert "layout_copy" in q.rules()


def test_flexible_inputs():
    p = P(inputs=(("x", (1, -1)),))
    assert "flexible_input" in p.rules()
