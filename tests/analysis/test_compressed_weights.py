"""The analyzer charges a compressed weight at its stored size — in memory and in the bytes an op
reads (coremltools: palettized weights are decompressed just in time on the Neural Engine from
iOS 17) — in both forms of the constexpr ops: attributes (iOS 16) and inline inputs (iOS 18)."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml.compress import weights_bytes


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compressed_weights")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 512)).eval()
    example = (torch.randn(1, 1, 512),)  # one token: reading the weights is the whole cost
    paths = {}
    for kind, options in (("fp16", {}), ("int8", {"compress": "int8"}), ("palettize4", {"compress": "palettize4"}),
                          ("palettize4-ios18", {"compress": "palettize4", "ios18": True})):
        paths[kind] = folder / f"{kind}.mlpackage"
        ane_rewrite.export(model, example, paths[kind], progress=False, **options)
    return {kind: (path, ane_rewrite.analyze(path)) for kind, path in paths.items()}


def test_weights_are_counted_as_stored(packages):
    for kind, (path, analysis) in packages.items():
        stored = weights_bytes(path)
        assert analysis.metrics["weight_bytes"] == pytest.approx(stored, rel=0.05), kind
        for estimate in analysis.estimates.values():
            assert estimate["weights_mib"] == pytest.approx(stored / 2**20, rel=0.05)
    assert packages["palettize4"][1].metrics["weight_bytes"] < 0.3 * packages["fp16"][1].metrics["weight_bytes"]


def test_a_memory_bound_program_is_estimated_faster_the_fewer_bytes_its_weights_take(packages):
    for chip in packages["fp16"][1].estimates:
        ms = {kind: analysis.estimates[chip]["latency_ms"] for kind, (_, analysis) in packages.items()}
        assert ms["palettize4"] < ms["int8"] < ms["fp16"], (chip, ms)
        assert ms["palettize4-ios18"] == pytest.approx(ms["palettize4"], rel=0.05)
