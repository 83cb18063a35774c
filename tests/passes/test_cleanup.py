"""passes/cleanup.py: inverse pairs, no-op views and slices, repeated computations."""
import pytest
import torch
from torch import nn

from ane_rewrite.passes.cleanup import cleanup
from tests.helpers import captured, count, outputs


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


CASES = [
    # (name, function, rule expected to fire, op that must be gone)
    ("permute pair", lambda x: x.permute(0, 2, 1).permute(0, 2, 1).relu(), "fold_permute_chain", "permute"),
    ("identity permute", lambda x: x.permute(0, 1, 2).relu(), "drop_identity_permute", "permute"),
    ("unsqueeze of squeeze", lambda x: x.unsqueeze(2).squeeze(2).unsqueeze(2).relu(), None, "squeeze"),
    ("view chain", lambda x: x.view(2, 15).view(5, 6).relu(), "fold_view_chain", None),
    ("no-op view", lambda x: x.view(2, 3, 5).relu(), "drop_noop_view", "view"),
    ("repeated call", lambda x: x.exp() + x.exp(), "dedupe", None),
    ("zero padding", lambda x: torch.nn.functional.pad(x, (0, 0, 0, 0)).relu(), "drop_noop_pad", "constant_pad_nd"),
    ("empty concat part", lambda x: torch.cat([x.relu(), x[..., 5:]], -1), "drop_empty_cat_parts", "cat"),
    ("permute of unit axes", lambda x: x[:, :1].permute(0, 2, 1).relu(), "unit_permute_as_reshape", "permute"),
]


class ConstantIndex(nn.Module):
    """Falcon's qkv[:, :, [-2]]: a constant index of consecutive entries is a slice."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def forward(self, x):
        return x[:, :, torch.tensor(self.at)].relu()


@pytest.mark.parametrize("at,fires", [([-2], True), ([1, 2, 3], True), ([0, 2], False), ([3, 1], False)])
def test_a_constant_index_of_consecutive_entries_is_a_slice(at, fires):
    module, example = ConstantIndex(at).eval(), (torch.randn(2, 3, 5),)
    gm = captured(module, example)
    result = cleanup(gm)
    assert (result.counts.get("index_as_slice", 0) == 1) == fires
    assert count(gm, "index") == (0 if fires else 1)
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))


class MaskBuilderIndex(nn.Module):
    """A mask builder's p[arange(B)[:, None, None, None], arange(K)[None, None, None, :]]
    (transformers' padding-mask function): static indices, one run per axis — a slice and a
    reshape, no gather. Indices that are not runs (a reversal) stay an index."""

    def __init__(self, reverse=False):
        super().__init__()
        self.reverse = reverse

    def forward(self, p):
        b, k = p.shape
        keys = torch.arange(k)
        if self.reverse:
            keys = keys.flip(0)
        picked = p[torch.arange(b)[:, None, None, None], keys[None, None, None, :]]
        return picked.expand(b, 1, 3, k) * 2


@pytest.mark.parametrize("reverse", [False, True])
def test_static_indices_built_from_arange_become_a_slice_and_a_reshape(reverse):
    module, example = MaskBuilderIndex(reverse).eval(), (torch.randn(2, 6),)
    gm = captured(module, example)
    result = cleanup(gm)
    assert (result.counts.get("index_as_slice", 0) == 1) == (not reverse)
    assert count(gm, "index") == (1 if reverse else 0)
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))


@pytest.mark.parametrize("name,fn,rule,gone", CASES, ids=[c[0] for c in CASES])
def test_rule_fires_keeps_numbers_and_is_idempotent(name, fn, rule, gone):
    module, example = Fn(fn).eval(), (torch.randn(2, 3, 5),)
    gm = captured(module, example)
    result = cleanup(gm)
    assert result.changed, result
    if rule:
        assert result.counts[rule] >= 1, result
    if gone:
        assert count(gm, gone) == 0
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))
    assert not cleanup(gm).changed


def test_dedupe_leaves_one_call():
    module, example = Fn(lambda x: x.exp() + x.exp() * x.exp()).eval(), (torch.randn(4),)
    gm = captured(module, example)
    cleanup(gm)
    assert count(gm, "exp") == 1


def test_non_inverse_permutes_fold_into_one():
    module, example = Fn(lambda x: x.permute(0, 2, 1, 3).permute(0, 3, 1, 2)).eval(), (torch.randn(2, 3, 4, 5),)
    gm = captured(module, example)
    result = cleanup(gm)
    assert count(gm, "permute") == 1 and result.counts["fold_permute_chain"] == 1
    (node,) = [n for n in gm.graph.nodes if n.target == torch.ops.aten.permute.default]
    assert list(node.args[1]) == [0, 3, 2, 1]
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))


def test_random_ops_are_not_deduplicated():
    module, example = Fn(lambda x: torch.rand_like(x) + torch.rand_like(x)).eval(), (torch.randn(3),)
    gm = captured(module, example)
    cleanup(gm)
    assert count(gm, "rand") + count(gm, "rand_like") == 2


def test_noop_slice_is_dropped():
    """torch.export already drops the model's own no-op slices; rewrites can leave some."""
    module, example = Fn(lambda x: x[:, 0:2].relu()).eval(), (torch.randn(2, 3, 5),)
    gm = captured(module, example)
    (node,) = [n for n in gm.graph.nodes if n.target == torch.ops.aten.slice.Tensor]
    node.args = (node.args[0], 1, 0, 9223372036854775807)  # now slices the whole axis
    node.meta["val"] = node.args[0].meta["val"]
    gm.recompile()
    result = cleanup(gm)
    assert result.counts["drop_noop_slice"] == 1 and count(gm, "slice") == 0
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), example[0].relu())


def test_drop_clone_keeps_values_and_relaxes_views():
    """clone(x) → x; a view that relied on the copy's contiguity becomes a reshape."""
    from ane_rewrite.rewrite.rules import Pass
    from ane_rewrite.passes.cleanup import drop_clone

    module = Fn(lambda x: x.transpose(1, 2).contiguous().view(2, 15)).eval()
    example = (torch.randn(2, 3, 5),)
    gm = captured(module, example)
    result = Pass("t", [drop_clone])(gm)
    assert result.counts["drop_clone"] == 1 and count(gm, "clone") == 0 and count(gm, "view") == 0
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))


def test_a_permute_that_moves_elements_stays_a_permute():
    """(2, 1, 5) → (1, 5, 2) swaps the two axes of size > 1: a real transpose, kept."""
    module, example = Fn(lambda x: x[:, :1].permute(1, 2, 0).relu()).eval(), (torch.randn(2, 3, 5),)
    gm = captured(module, example)
    result = cleanup(gm)
    assert result.counts["unit_permute_as_reshape"] == 0 and count(gm, "permute") == 1
    torch.testing.assert_close(outputs(gm, example), module(*example))


def test_a_dit_modulation_turned_channels_first_is_a_reshape(tmp_path):
    """x + shift(c) with shift (B, 1, C) from the conditioning: its channels-first form moves no
    element, so the export has no transpose for it (SD3 small config: 30 → 8 transposes, as is 15)."""
    import ane_rewrite
    from ane_rewrite.coreml.mil import op_mix, program_ops

    class Modulated(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.mod, self.out = nn.Linear(16, 16), nn.Linear(8, 32), nn.Linear(16, 16)

        def forward(self, x, c):
            shift, scale = self.mod(c).unsqueeze(1).chunk(2, dim=-1)
            return self.out(self.fc(x) * (1 + scale) + shift)

    module, example = Modulated().eval(), (torch.randn(1, 12, 16), torch.randn(1, 8))
    fast = ane_rewrite.optimize(module, example)
    assert fast.ane_report.counts()["cleanup"].get("unit_permute_as_reshape", 0) >= 1
    assert ane_rewrite.verify(module, fast, example, draws=2).ok
    ml = ane_rewrite.export(fast, example, tmp_path / "fast.mlpackage", progress=False)
    assert op_mix(program_ops(ml))["transpose"] == 2  # the tokens in and out: none for shift and scale
