"""ane_rewrite.analyze: findings by placement rule, metrics, estimates; `ane-rewrite analyze`."""
import json

import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.analysis import report as analysis
from ane_rewrite import cost, hardware
from ane_rewrite.analysis import placement
from ane_rewrite.cli import main
from ane_rewrite.errors import InputError
from ane_rewrite.coreml.mil import MilOp, MilValue
from tests.zoo import distilbert
from tests.zoo_vision import moat_block


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory):
    """(baseline analysis, rewritten analysis, rewritten path) of a 2-layer DistilBERT, seq 32."""
    from ane_rewrite.frontend import models

    model, _ = distilbert()
    example = models.example_inputs(model, seq_len=32)
    d = tmp_path_factory.mktemp("analysis")
    ane_rewrite.export(model, example, d / "base.mlpackage")
    ane_rewrite.export(ane_rewrite.optimize(model, example, lower_every_attention=True), example, d / "new.mlpackage")
    return ane_rewrite.analyze(d / "base.mlpackage"), ane_rewrite.analyze(d / "new.mlpackage"), d / "new.mlpackage"


def test_baseline_names_batched_attention_linears_and_the_embedding_gather(tiny_distilbert):
    base, _, _ = tiny_distilbert
    rules = base.by_rule()
    assert rules["batched_attention"] == 2 * 2  # q·kᵀ and weights·v per layer
    assert rules["channels_last_linear"] == 2 * 6  # q, k, v, out, ffn × 2 per layer on (B, S, C)
    assert rules["softmax_axis"] == 2
    lookups = [f for f in base.findings if f.rule == "gather" and "embedding lookup" in f.reason]
    assert len(lookups) == 1 and lookups[0].severity == "off_ane" and lookups[0].type == "gather"
    for f in base.findings:
        assert f.op and f.type and f.reason and f.severity in analysis.SEVERITY_ORDER
        assert f.source.startswith(hardware.DOC)


def test_rewritten_names_only_what_remains(tiny_distilbert):
    _, new, _ = tiny_distilbert
    rules = new.by_rule()
    for gone in ("batched_attention", "channels_last_linear", "softmax_axis", "rank_5"):
        assert rules[gone] == 0, [f for f in new.findings if f.rule == gone]
    assert rules["gather"] == 1  # the word-embedding lookup is still a gather on the CPU
    assert new.metrics["ranks"].keys() <= {"1", "2", "3", "4"}


def test_estimates_are_per_chip(tiny_distilbert):
    """At this toy size the per-op cost dominates (the rewrite has more ops); the realistic-size
    comparison is in tests/test_cli.py and benchmarks/."""
    base, new, _ = tiny_distilbert
    assert tuple(base.estimates) == hardware.DEFAULT_CHIPS and set(hardware.DEFAULT_CHIPS) <= set(hardware.CHIPS)
    for chip, e in base.estimates.items():
        assert e["latency_ms"] > e["ane_ms"] > 0 and new.estimates[chip]["latency_ms"] > 0
        assert e["peak_memory_mib"] >= e["weights_mib"] > 0 and e["band"] == cost.BAND
        # the lookups, and the mask made from the integer attention_mask (the ANE computes in fp16)
        assert e["off_ane_ops"] > new.estimates[chip]["off_ane_ops"] >= 1


def test_json_cli_prints_findings_metrics_estimates(tiny_distilbert, capsys):
    _, _, path = tiny_distilbert
    assert main(["analyze", str(path), "--json", "--chip", "M1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"findings", "metrics", "estimates"} <= set(report)
    assert list(report["estimates"]) == ["M1"]
    assert all({"op", "type", "rule", "reason", "severity"} <= set(f) for f in report["findings"])
    for key in ("op_mix", "copies", "ranks", "dtypes", "largest_tensor", "activation_bytes_padded"):
        assert key in report["metrics"]


def test_text_cli_and_errors(tiny_distilbert, tmp_path, capsys):
    _, _, path = tiny_distilbert
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[off_ane] gather × 1" in out and "estimates (analytic, not measured" in out
    assert main(["analyze", str(tmp_path / "missing.mlpackage")]) == 2
    assert "cannot read a Core ML model" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown chip profile"):
        ane_rewrite.analyze(path, ("Z80",))


class Roll(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return torch.roll(self.fc(x), 3, 1) * 2.0


def test_roll_is_named_as_a_gather_and_gone_after_the_rewrite(tmp_path):
    model, example = Roll().eval(), (torch.randn(1, 8, 16),)
    base = ane_rewrite.analyze(ane_rewrite.export(model, example))
    rolls = [f for f in base.findings if f.rule == "gather"]
    assert len(rolls) == 1 and "torch.roll" in rolls[0].reason and "rotates axis 1" in rolls[0].reason
    new = ane_rewrite.analyze(ane_rewrite.export(ane_rewrite.optimize(model, example), example))
    assert new.by_rule()["gather"] == 0


def test_rank5_window_partition_flagged_in_the_baseline_only():
    model, example = moat_block()
    base = ane_rewrite.analyze(ane_rewrite.export(model, example))
    new = ane_rewrite.analyze(ane_rewrite.export(ane_rewrite.optimize(model, example), example))
    assert base.by_rule()["rank_5"] > 0 and new.by_rule()["rank_5"] == 0


def _v(name, shape, dtype="FLOAT16"):
    return MilValue(name, dtype, tuple(shape))


def test_padding_and_liveness_arithmetic():
    assert placement.nbytes(_v("a", (4, 1))) == 8 and placement.nbytes(_v("a", (4, 1)), padded=True) == 256
    assert placement.nbytes(_v("b", (2, 32))) == placement.nbytes(_v("b", (2, 32)), padded=True) == 128
    # x → a (64 KiB) → b (64 KiB) → c reads a and b: a and b are live together, then c too
    x = _v("x", (1, 32768))
    ops = [MilOp("relu", ("x",), (_v("a", (1, 32768)),), {"x": ("x",)}),
           MilOp("relu", ("a",), (_v("b", (1, 32768)),), {"x": ("a",)}),
           MilOp("add", ("a", "b"), (_v("c", (1, 32768)),), {"x": ("a",), "y": ("b",)}),
           MilOp("relu", ("c",), (_v("d", (1, 32768)),), {"x": ("c",)})]
    prog = placement.Program(ops, [x])
    peak, at = prog.peak_activations
    assert (peak, at) == (3 * 65536, 2)
    finding = placement.RULES[[r.id for r in placement.RULES].index("last_axis_padding")]
    wide = MilOp("relu", ("x",), (_v("p", (4096, 2, 3)),), {"x": ("x",)})
    assert "pads to 64" in finding.check(wide, prog) and finding.check(ops[0], prog) is None
