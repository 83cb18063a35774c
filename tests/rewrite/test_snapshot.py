"""ane_rewrite/rewrite/snapshot.py: a pass rolled back leaves the graph module as it was."""
import torch
from torch import nn

from ane_rewrite.rewrite.graph import aten
from ane_rewrite.rewrite.rules import MatchResult, Pass, Rule
from ane_rewrite.rewrite.snapshot import Snapshot
from tests.helpers import captured, outputs


def test_restore_puts_back_the_graph_and_drops_the_added_constants():
    module, example = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval(), (torch.randn(5, 3),)
    gm = captured(module, example)
    before = [(n.name, n.target) for n in gm.graph.nodes]
    saved = Snapshot(gm)

    def add_scaled(rw, node, m):
        return rw.call(aten.mul.Tensor, node.args[0], rw.constant("two", torch.tensor(2.0)))

    Pass("scale", [Rule("scale", (aten.relu,), lambda node: MatchResult.ok(), add_scaled)])(gm)
    assert any(n.startswith("_ane_") for n, _ in gm.named_buffers())
    saved.restore(gm)
    assert [(n.name, n.target) for n in gm.graph.nodes] == before
    assert not any(n.startswith("_ane_") for n, _ in gm.named_buffers())
    assert torch.equal(outputs(gm, example), outputs(module, example))
    assert set(gm.state_dict()) == set(module.state_dict())


def test_the_snapshot_module_shares_the_weights():
    module, example = nn.Sequential(nn.Linear(3, 4)).eval(), (torch.randn(5, 3),)
    gm = captured(module, example)
    ref = Snapshot(gm).module(gm)
    assert all(a is b for a, b in zip(ref.parameters(), gm.parameters()))
    assert torch.equal(outputs(ref, example), outputs(module, example))
