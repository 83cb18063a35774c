"""passes/windows.py: window/grid partition and reverse without tensors of rank > 4.

    view(B, H/h, h, W/w, w, C) ─ permute(0, 1, 3, 2, 4, 5) ─ clone ─ view(-1, h, w, C)
        → reshape(B·H/h, h, W/w, w·C) ─ permute(0, 2, 1, 3) ─ reshape(-1, h, w, C)
"""
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from ane_rewrite.passes._movement import block_swaps
from ane_rewrite.passes.windows import windows
from ane_rewrite.rewrite.graph import shape as shape_of
from tests.helpers import captured, outputs


def window_partition(x, h, w):  # (B, H, W, C) → (B·nW, h, w, C), Swin's helper
    b, hh, ww, c = x.shape
    x = x.view(b, hh // h, h, ww // w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


def window_reverse(win, h, w, hh, ww):  # inverse of window_partition
    c = win.shape[-1]
    x = win.view(-1, hh // h, ww // w, h, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, hh, ww, c)


def grid_partition(x, gh, gw):  # MaxViT's grid: (B, H, W, C) → (B·h·w, gh, gw, C)
    b, hh, ww, c = x.shape
    x = x.view(b, gh, hh // gh, gw, ww // gw, c)
    return x.permute(0, 2, 4, 1, 3, 5).contiguous().view(-1, gh, gw, c)


class Roundtrip(nn.Module):
    def __init__(self, h, w, grid=False):
        super().__init__()
        self.h, self.w, self.grid = h, w, grid

    def forward(self, x):
        part = grid_partition(x, self.h, self.w) if self.grid else window_partition(x, self.h, self.w)
        back = window_reverse(part * 2.0, self.h, self.w, x.shape[1], x.shape[2]) if not self.grid else part
        return part, back


def _max_rank(gm) -> int:
    return max((n.meta["val"].dim() for n in gm.graph.nodes
                if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor)), default=0)


def _run(module, example):
    gm = captured(module, example)
    assert _max_rank(gm) == 6  # the captured helpers do pass through rank 6
    result = windows(gm)
    return gm, result


def test_swin_partition_and_reverse_take_one_rank4_transpose_each():
    module, example = Roundtrip(7, 7).eval(), (torch.randn(2, 14, 21, 8),)
    gm, result = _run(module, example)
    assert result.counts["low_rank_permute"] == 2
    assert _max_rank(gm) == 4
    permutes = [n for n in gm.graph.nodes if n.target == torch.ops.aten.permute.default]
    assert len(permutes) == 2 and all(list(n.args[1]) == [0, 2, 1, 3] for n in permutes)
    expected, got = module(*example), outputs(gm, example)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert not windows(gm).changed


def test_grid_partition_takes_two_steps():
    assert len(block_swaps([1, 4, 8, 4, 8, 64], [0, 2, 4, 1, 3, 5])) == 2
    module, example = Roundtrip(2, 3, grid=True).eval(), (torch.randn(1, 8, 9, 5),)
    gm, _ = _run(module, example)
    assert _max_rank(gm) <= 4
    assert all(torch.equal(a, b) for a, b in zip(module(*example), outputs(gm, example)))


def test_block_swaps_reproduce_any_permutation():
    sizes, perm = [2, 3, 4, 5, 6, 7], [5, 3, 0, 4, 1, 2]
    x = torch.arange(torch.tensor(sizes).prod().item()).view(sizes)
    t = x
    for dims, step in block_swaps(sizes, perm):
        assert len(dims) <= 4
        t = t.reshape(dims).permute(step)
    assert torch.equal(t.reshape([sizes[p] for p in perm]), x.permute(perm))


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), nh=st.integers(1, 4), nw=st.integers(1, 4), h=st.integers(1, 5),
       w=st.integers(1, 5), c=st.integers(1, 9), grid=st.booleans())
def test_property_partition_and_reverse_equal_the_originals_exactly(batch, nh, nw, h, w, c, grid):
    module = Roundtrip(h, w, grid=grid).eval()
    example = (torch.randn(batch, nh * h, nw * w, c),)
    gm = captured(module, example)
    windows(gm)
    assert _max_rank(gm) <= 4
    assert all(torch.equal(a, b) for a, b in zip(module(*example), outputs(gm, example)))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=5, max_size=7), data=st.data())
def test_property_block_swaps_of_random_permutations(sizes, data):
    perm = data.draw(st.permutations(list(range(len(sizes)))))
    x = torch.arange(int(torch.tensor(sizes).prod())).view(sizes)
    t = x
    for dims, step in block_swaps(sizes, list(perm)):
        assert len(dims) <= 4
        t = t.reshape(dims).permute(step)
    assert torch.equal(t.reshape([sizes[p] for p in perm]), x.permute(list(perm)))


class Roll(nn.Module):
    def __init__(self, shifts, dims):
        super().__init__()
        self.shifts, self.dims = shifts, dims

    def forward(self, x):
        return torch.roll(x, self.shifts, self.dims) * 2.0


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), sh=st.integers(-12, 12), sw=st.integers(-12, 12))
def test_property_roll_is_two_slices_and_a_cat_per_axis(h, w, sh, sw):
    module, example = Roll((sh, sw), (1, 2)).eval(), (torch.randn(2, h, w, 3),)
    gm = captured(module, example)
    windows(gm)
    assert sum(n.target == torch.ops.aten.roll.default for n in gm.graph.nodes) == 0
    assert torch.equal(outputs(gm, example), module(*example))


def test_roll_of_the_flattened_tensor_is_declined_with_reason():
    module, example = Roll(3, None).eval(), (torch.randn(2, 5),)
    gm = captured(module, example)
    result = windows(gm)
    assert any("flattened" in d.reason for d in result.declined)
    assert torch.equal(outputs(gm, example), module(*example))


def test_a_fused_qkv_split_at_batch_1_takes_one_step():
    """(B, S, 3, H, d) → (3, B, H, d, S) (XCiT's q, k, v with the tokens last): at batch 1 the
    unit axis moves nothing and (3, H, d) stays together, so one (S, 3·H·d) transpose does it
    where inserting axis by axis took three."""
    class Split(nn.Module):
        def forward(self, x):
            return x.reshape(1, 10, 3, 2, 4).permute(2, 0, 3, 4, 1)

    module, example = Split().eval(), (torch.randn(1, 10, 24),)
    gm = captured(module, example)
    result = windows(gm)
    permutes = [n for n in gm.graph.nodes if n.target == torch.ops.aten.permute.default]
    assert result.counts["low_rank_permute"] == 1 and len(permutes) == 1
    assert shape_of(permutes[0]) == (240 // 10, 10)  # the (3·H·d, S) transpose
    assert torch.equal(outputs(gm, example), module(*example))
