"""Ops coremltools has no value inference for, against their documented semantics (references
written with torch's own functions or the documentation's worked examples)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb
from hypothesis import given, settings, strategies as st

from ane_rewrite.runtime.ops import OPS, Out
from tests.runtime.mil_programs import ours

rng = np.random.default_rng(1)


def _f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _close(expected, actual, tol=1e-4):
    expected = expected.numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2]), st.sampled_from([1, 2]),
       st.sampled_from(["valid", "same", "same_lower", "custom"]), st.integers(7, 10), st.sampled_from([1, 2]))  # ≥ 7: a 3×4 kernel dilated twice spans 5×7
def test_conv_2d_every_pad_type(k, groups, stride, dilation, pad_type, size, cin_per_group):
    x = _f32(1, groups * cin_per_group, size, size + 1)
    w = _f32(2 * groups, cin_per_group, k, k + 1)
    b = _f32(2 * groups)
    pad = [1, 0, 2, 1]
    got = ours(lambda x: mb.conv(x=x, weight=w, bias=b, strides=[stride, stride], dilations=[dilation, dilation],
                                 groups=groups, pad_type=pad_type, pad=pad), x=x)
    xt = torch.from_numpy(x)
    if pad_type == "custom":
        xt = F.pad(xt, [pad[2], pad[3], pad[0], pad[1]])
    elif pad_type != "valid":  # the documented total, smaller half first ("same") or last ("same_lower")
        pads = []
        for axis, kk in ((3, k + 1), (2, k)):
            n = x.shape[axis]
            total = max((-(-n // stride) - 1) * stride + (kk - 1) * dilation + 1 - n, 0)
            small, large = total // 2, total - total // 2
            pads += [large, small] if pad_type == "same_lower" else [small, large]
        xt = F.pad(xt, pads)
    _close(F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride, 0, dilation, groups), got)


def test_conv_1d_and_conv_transpose():
    x, w = _f32(2, 3, 10), _f32(4, 3, 3)
    _close(F.conv1d(torch.from_numpy(x), torch.from_numpy(w), padding=1), ours(
        lambda x: mb.conv(x=x, weight=w, pad_type="custom", pad=[1, 1]), x=x))
    x, w = _f32(1, 3, 5, 5), _f32(3, 2, 3, 3)
    full = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2)
    _close(full, ours(lambda x: mb.conv_transpose(x=x, weight=w, strides=[2, 2]), x=x))
    _close(full[:, :, 1:-2, 2:-1], ours(lambda x: mb.conv_transpose(x=x, weight=w, strides=[2, 2], pad_type="custom",
                                                                    pad=[1, 2, 2, 1]), x=x))


@pytest.mark.parametrize("ceil", [False, True])
def test_pools(ceil):
    x = _f32(1, 2, 7, 6)
    xt = torch.from_numpy(x)
    kw = dict(kernel_sizes=[3, 2], strides=[2, 2], pad_type="custom", pad=[1, 1, 0, 0], ceil_mode=ceil)
    _close(F.max_pool2d(F.pad(xt, [0, 0, 1, 1], value=-np.inf), [3, 2], 2, ceil_mode=ceil),
           ours(lambda x: mb.max_pool(x=x, **kw), x=x))
    included = F.avg_pool2d(xt, [3, 2], 2, padding=[1, 0], ceil_mode=ceil, count_include_pad=True)
    excluded = F.avg_pool2d(xt, [3, 2], 2, padding=[1, 0], ceil_mode=ceil, count_include_pad=False)
    _close(included, ours(lambda x: mb.avg_pool(x=x, exclude_padding_from_average=False, **kw), x=x))
    _close(excluded, ours(lambda x: mb.avg_pool(x=x, exclude_padding_from_average=True, **kw), x=x))
    _close(F.lp_pool2d(xt, 2, [2, 2], 2), ours(lambda x: mb.l2_pool(x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"), x=x))


def test_norms_and_silu():
    x = _f32(2, 3, 4, 5)
    mean, var, g, b = _f32(3), np.abs(_f32(3)) + 0.5, _f32(3), _f32(3)
    t = torch.from_numpy
    _close(F.batch_norm(t(x), t(mean), t(var), t(g), t(b), eps=1e-3),
           ours(lambda x: mb.batch_norm(x=x, mean=mean, variance=var, gamma=g, beta=b, epsilon=1e-3), x=x))
    _close(F.instance_norm(t(x), weight=t(g), bias=t(b), eps=1e-5),
           ours(lambda x: mb.instance_norm(x=x, gamma=g, beta=b, epsilon=1e-5), x=x))
    _close(F.local_response_norm(t(x), 3, 1e-2, 0.75, 2.0),
           ours(lambda x: mb.local_response_norm(x=x, size=3, alpha=1e-2, beta=0.75, k=2.0), x=x))
    _close(F.silu(t(x)), ours(lambda x: mb.silu(x=x), x=x))


def test_gather_nd_scatter_scatter_nd_one_hot():
    x = _f32(3, 4, 5)
    idx = np.array([[0, 1], [2, -1], [1, 3]], np.int32)
    _close(x[[0, 2, 1], [1, 3, 3]], ours(lambda x, i: mb.gather_nd(x=x, indices=i), x=x, i=idx))
    upd = _f32(3, 2, 5)
    for mode, combine in (("update", lambda d, u: u), ("add", np.add), ("mul", np.multiply), ("max", np.maximum)):
        expected = x.copy()
        expected[:, [3, 0]] = combine(expected[:, [3, 0]], upd)
        got = ours(lambda x, u: mb.scatter(data=x, indices=np.array([3, 0], np.int32), updates=u, axis=1, mode=mode),
                   x=x, u=upd)
        _close(expected, got)
    upd_nd = _f32(2, 5)
    expected = x.copy()
    expected[1, 2] += upd_nd[0]
    expected[0, 0] += upd_nd[1]
    _close(expected, ours(lambda x, u: mb.scatter_nd(data=x, indices=np.array([[1, 2], [0, 0]], np.int32), updates=u,
                                                       mode="add"), x=x, u=upd_nd))
    ids = np.array([[1, 0, 3]], np.int32)
    _close(np.eye(4, dtype=np.float32)[ids[0]][None] * 2 - 1,
           ours(lambda i: mb.one_hot(indices=i, one_hot_vector_size=4, on_value=1.0, off_value=-1.0), i=ids))


# The documentation's grids: X_in = 2 over values [0, 1], X_out = 5 and 6.
RESIZE_GRIDS = {
    "UNALIGN_CORNERS": ([0., 0.1, 0.5, 0.9, 1.], [0., 0., 0.33, 0.67, 1., 1.]),
    "STRICT_ALIGN_CORNERS": ([0., 0.25, 0.5, 0.75, 1.], [0., 0.2, 0.4, 0.6, 0.8, 1.]),
    "DEFAULT": ([0., 0.4, 0.8, 1., 1.], [0., 0.33, 0.67, 1., 1., 1.]),
    "OFFSET_CORNERS": ([0.1, 0.3, 0.5, 0.7, 0.9], [0.08, 0.25, 0.42, 0.58, 0.75, 0.92]),
}


@pytest.mark.parametrize("mode", list(RESIZE_GRIDS))
def test_resize_bilinear_samples_the_documented_grid(mode):
    x = np.array([[[[0.0, 1.0]]]], np.float32)
    for width, grid in zip((5, 6), RESIZE_GRIDS[mode]):
        got = ours(lambda x: mb.resize_bilinear(x=x, target_size_height=1, target_size_width=width,
                                                sampling_mode=mode), x=x)
        np.testing.assert_allclose(got.reshape(-1), grid, atol=0.006)


def test_upsample_bilinear_and_nearest():
    x = np.array([[[[0.0, 1.0]]]], np.float32)
    got = ours(lambda x: mb.upsample_bilinear(x=x, scale_factor_height=1.0, scale_factor_width=2.5,
                                              align_corners=False), x=x)
    np.testing.assert_allclose(got.reshape(-1), [0., 0.1, 0.5, 0.9, 1.], atol=1e-6)
    got = ours(lambda x: mb.upsample_bilinear(x=x, scale_factor_height=1, scale_factor_width=3,
                                              align_corners=True), x=x)
    np.testing.assert_allclose(got.reshape(-1), [0., 0.2, 0.4, 0.6, 0.8, 1.], atol=1e-6)
    x = _f32(1, 2, 3, 4)
    _close(F.interpolate(torch.from_numpy(x), scale_factor=(2, 3), mode="nearest"),
           ours(lambda x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=3), x=x))


def test_space_depth_shuffles_and_windows():
    x = _f32(1, 8, 2, 3)
    t = torch.from_numpy(x)
    _close(F.pixel_shuffle(t, 2), ours(lambda x: mb.pixel_shuffle(x=x, upscale_factor=2), x=x))
    d2s = ours(lambda x: mb.depth_to_space(x=x, block_size=2), x=x)
    # depth-column-row: output (c, 2h + i, 2w + j) reads channel (i·2 + j)·2 + c
    for i in range(2):
        for j in range(2):
            np.testing.assert_array_equal(d2s[0, :, i::2, j::2], x[0, (i * 2 + j) * 2:(i * 2 + j) * 2 + 2])
    np.testing.assert_array_equal(ours(lambda x: mb.space_to_depth(x=mb.depth_to_space(x=x, block_size=2),
                                                                   block_size=2), x=x), x)
    w = ours(lambda x: mb.sliding_windows(x=x, axis=3, size=2, stride=1), x=x)
    np.testing.assert_array_equal(w[..., 1, :], x[..., 1:3])


def test_fill_and_range_directly():
    filled = OPS["fill"]({"shape": torch.tensor([2, 3]), "value": torch.tensor(1.5)}, [Out((2, 3), "fp32")])
    assert torch.equal(filled, torch.full((2, 3), 1.5))
    r = OPS["range_1d"]({"start": torch.tensor(2), "end": torch.tensor(11), "step": torch.tensor(3)},
                        [Out((3,), "int32")])
    assert r.tolist() == [2, 5, 8]
