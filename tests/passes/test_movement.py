"""passes/_movement.py: pure data movement recovered as reshape → permute → reshape.

    index = arange(prod F).view(F).permute(p).reshape(shape)   ⇐   factorize(index) = (F, p)
"""
import math

import torch
from hypothesis import given, settings, strategies as st

from ane_rewrite.passes._movement import block_swaps, factorize, merged


def _apply(x, sizes, perm, out_shape):
    return x.reshape(sizes).permute(perm).reshape(out_shape)


def test_window_partition_of_a_channels_first_map():
    y = torch.arange(2 * 8 * 6 * 4).view(2, 8, 6, 4)  # (B, C, H, W), windows 3 × 2
    t = y.permute(0, 2, 3, 1).reshape(2, 2, 3, 2, 2, 8).permute(0, 1, 3, 2, 4, 5).reshape(8, 6, 8)
    t = t.permute(0, 2, 1).unsqueeze(2)  # to (B·nW, C, 1, N): what a 1×1 conv reads
    sizes, perm = merged(*factorize(t))
    assert sizes == [2, 8, 2, 3, 2, 2] and perm == [0, 2, 4, 1, 3, 5]
    assert torch.equal(_apply(y, sizes, perm, t.shape), t)
    assert len(block_swaps(sizes, perm)) == 2  # two rank-≤4 transposes instead of three


def test_not_a_movement():
    x = torch.arange(24).view(2, 3, 4)
    assert factorize(x.flip(2)) is None                   # reversed: no permute does it
    assert factorize(x.expand(2, 2, 3, 4)) is None        # broadcast: not a permutation
    assert factorize(torch.arange(6).view(2, 3)) == ([6], [0])  # identity: one factor


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_any_reshape_permute_reshape_is_recovered(sizes, rnd):
    perm = list(range(len(sizes)))
    rnd.shuffle(perm)
    n = math.prod(sizes)
    out_shape = [d for d in ([n // 2, 2] if n % 2 == 0 else [n])]
    index = _apply(torch.arange(n), sizes, perm, out_shape)
    found = factorize(index)
    assert found is not None
    f_sizes, f_perm = merged(*found)
    assert torch.equal(_apply(torch.arange(n), f_sizes, f_perm, out_shape), index)
    assert len(f_sizes) <= len([s for s in sizes if s > 1]) or len(f_sizes) == 1
