"""passes/_rotary_parts.py: a rotation read through scalar factors and a part of the token axis.

    conv ─ heads ─ · c ─┬─ · cos ─────────────┐
                        └─ slice/neg/cat · sin ┴─ + ─ sdpa    →   conv ─ (· c·cos + rot · c·sin)_C ─ heads ─ sdpa

    conv ─ heads ─ split(P, S − P) ─┬─ [0] ─────────────────────────┐
                                    └─ [1] ─ · cos + rot · sin ─────┴─ cat ─ sdpa
        →   conv ─ (· [1 | cos] + rot · [0 | sin])_C ─ heads ─ sdpa
"""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil
from ane_rewrite.frontend.capture import capture
from ane_rewrite.passes._rotary_parts import operand, part
from ane_rewrite.rewrite.graph import aten, is_op
from tests.helpers import count
from tests.passes.test_rotary import rotate_half


def _grid_tables(tokens: int, d: int):
    """cos, sin (tokens, d) of a 2-D rope computed at run time from a grid of patch centres."""
    side = int(tokens ** 0.5)
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).flatten(0, 1)   # (tokens, 2)
    freq = 1.0 / 100 ** torch.arange(0, 1, 4 / d)                                           # (d / 4,)
    angles = (2 * torch.pi * grid[:, :, None] * freq).flatten(1).tile(2)                   # (tokens, d)
    return angles.cos(), angles.sin()


class PlacedRope(nn.Module):
    """q and k rotated after a scalar factor and/or on the tokens after ``prefix`` only.
    ``order``: where the factor sits — "before" the token cut (the rest is scaled too), "after"
    it (the turned part only), or None; ``split``: the cut is a split (else a slice)."""

    def __init__(self, c=32, heads=4, prefix=0, tokens=16, scale=None, order="before", split=True, factor=None):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.heads, self.d, self.prefix, self.tokens = heads, c // heads, prefix, tokens
        self.scale, self.order, self.split = scale, order, split
        self.factor = None if factor is None else nn.Parameter(factor)

    def rope(self, t):
        cos, sin = _grid_tables(self.tokens, self.d)
        if self.scale is not None and self.order == "before":
            t = t * self.scale
        if self.factor is not None:
            t = t * self.factor
        if self.prefix:
            head, rest = (t.split((self.prefix, self.tokens), dim=-2) if self.split
                          else (t[:, :, :self.prefix], t[:, :, self.prefix:]))
        else:
            head, rest = None, t
        if self.scale is not None and self.order == "after":
            rest = rest * self.scale
        rest = rest * cos + rotate_half(rest) * sin
        return rest if head is None else torch.cat((head, rest), dim=-2)

    def forward(self, x):
        b, s, c = x.shape
        q, k, v = (p(x).view(b, s, self.heads, self.d).transpose(1, 2) for p in (self.q, self.k, self.v))
        out = nn.functional.scaled_dot_product_attention(self.rope(q), self.rope(k), v, scale=1.0)
        return out.transpose(1, 2).reshape(b, s, c)


def _exported_transposes(module, example, path) -> int:
    """Transposes of the exported program (the rope tables' own permutes fold into constants there)."""
    path = ane_rewrite.export(module, example, path, progress=False)
    return mil.summary(mil.program_ops(path))["transpose"]


def _optimized(module, example):
    fast = ane_rewrite.optimize(module, example, lower_every_attention=True)
    return fast, fast.ane_report.counts()


@settings(max_examples=6, deadline=None)
@given(prefix=st.sampled_from([0, 1, 3]), scale=st.sampled_from([None, 0.25, -2.0]),
       order=st.sampled_from(["before", "after"]), split=st.booleans(), heads=st.sampled_from([1, 2, 4]))
def test_property_rotations_behind_factors_and_prefixes_are_lowered_and_equivalent(prefix, scale, order, split, heads):
    module = PlacedRope(c=8 * heads, heads=heads, prefix=prefix, scale=scale, order=order, split=split).eval()
    example = (torch.randn(2, prefix + 16, 8 * heads),)
    fast, counts = _optimized(module, example)
    assert counts["rotary"]["rotary_on_channels"] == 2
    assert counts["rotary"].get("rejoin_slices", 0) == (2 if prefix else 0)
    assert counts["attention"]["sdpa_per_head"] == 1
    assert count(fast, "linear") == 0 and count(fast, "scaled_dot_product_attention") == 0
    report = ane_rewrite.verify(module, fast, example)
    assert report.ok and report.psnr >= 60, report


def test_the_factor_rides_on_the_tables_not_on_the_activations():
    """ESM's q · c before its rotation: no multiply by c is left on a (B, C, 1, S) tensor."""
    module, example = PlacedRope(scale=0.25).eval(), (torch.randn(1, 16, 32),)
    fast, counts = _optimized(module, example)
    scaled = [n for n in fast.graph.nodes if is_op(n, aten.mul.Tensor) and 0.25 in n.args]
    assert scaled and all(n.meta["val"].shape[0] == 1 and n.meta["val"].shape[1] == 1 for n in scaled)
    assert ane_rewrite.verify(module, fast, example).ok


def test_running_the_pass_again_changes_nothing():
    from ane_rewrite.passes import rotary

    module, example = PlacedRope(prefix=2, scale=0.5).eval(), (torch.randn(1, 18, 32),)
    fast, _ = _optimized(module, example)
    assert rotary(fast).changed is False


@pytest.mark.parametrize("placement", [dict(scale=0.25), dict(prefix=2, scale=0.5, order="after")])
def test_the_export_has_no_linear_and_no_more_transposes_than_the_module_as_is(placement, tmp_path):
    module = PlacedRope(**placement).eval()
    example = (torch.randn(1, placement.get("prefix", 0) + 16, 32),)
    fast, _ = _optimized(module, example)
    assert _exported_transposes(fast, example, tmp_path / "m.mlpackage") <= \
        _exported_transposes(module, example, tmp_path / "as_is.mlpackage")
    assert mil.summary(mil.program_ops(tmp_path / "m.mlpackage"))["linear"] == 0
    executed = ane_rewrite.verify(module, tmp_path / "m.mlpackage", example, draws=1, source=fast)  # fp32
    assert executed.ok and executed.psnr >= 60, executed


def test_a_factor_per_channel_is_declined_and_adds_no_transpose(tmp_path):
    """rope(w ⊙ q) with w per head channel: rot(w ⊙ q) is not w ⊙ rot(q), so no table holds it.
    Declined with the reason; the attention keeps its projections, no transpose is added."""
    module = PlacedRope(factor=torch.linspace(0.5, 2.0, 8)).eval()
    example = (torch.randn(1, 16, 32),)
    fast, _ = _optimized(module, example)
    reasons = {d.reason for r in fast.ane_report.results if r.name == "rotary" for d in r.declined}
    assert any("is not a head split of a (B, C, 1, S) tensor, nor a scalar multiple or a part of the tokens"
               in why for why in reasons), reasons
    assert _exported_transposes(fast, example, tmp_path / "m.mlpackage") <= \
        _exported_transposes(module, example, tmp_path / "as_is.mlpackage")
    assert ane_rewrite.verify(module, fast, example).ok


@pytest.mark.parametrize("spelling,found", [
    (lambda t: t[:, 2:7], (1, 2, 7)),
    (lambda t: t[:, -3:], (1, 5, 8)),
    (lambda t: t.split((3, 5), dim=1)[1], (1, 3, 8)),
    (lambda t: t.split(3, dim=1)[2], (1, 6, 8)),         # pieces of 3, the last one shorter
    (lambda t: t[:, ::2], None),                          # not a unit step
    (lambda t: t * 2, None),
])
def test_parts_of_one_axis(spelling, found):
    class Cut(nn.Module):
        def forward(self, x):
            return spelling(x + 1)

    gm = capture(Cut(), (torch.randn(2, 8),))
    out = [n for n in gm.graph.nodes if n.op == "output"][0].args[0][0]
    got = part(out)
    assert (got[1:] if got else None) == found


def test_operand_peels_factors_on_both_sides_of_the_cut():
    class Scaled(nn.Module):
        def forward(self, x):
            return (x + 1).mul(3.0)[:, :, 1:] / 2

    gm = capture(Scaled(), (torch.randn(1, 2, 5, 4),))
    out = [n for n in gm.graph.nodes if n.op == "output"][0].args[0][0]
    op = operand(out, token_dim=2)
    assert op.positions == (1, 5) and op.scale == 1.5 and op.rest_scale == 3.0
    assert is_op(op.whole, aten.add.Tensor) and op.rest_of is not None and is_op(op.rest_of, aten.mul.Tensor)
    assert operand(out, token_dim=3).positions is None  # the cut is not of the tokens: the factor only
