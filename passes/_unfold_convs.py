"""Unfold and fold as convolutions: ``F.unfold`` (``im2col``) and ``F.fold`` (``col2im``) of any
kernel, dilation, padding and stride as one grouped convolution with one-hot weights each.

Glossary: C the channels, (kh, kw) the kernel, K = kh·kw, (Lh, Lw) the positions the kernel
takes, L = Lh·Lw; d, p, s the dilation, padding and stride.

    im2col(x_BCHW, k, d, p, s)          → reshape(conv2d(x, eye_K, stride s, padding p, dilation d,
                                                         groups C), [B, C·K, L])
    col2im(cols_B,C·K,L, (H, W), k, d, p, s)
                                        → conv_transpose2d(reshape(cols, [B, C·K, Lh, Lw]), eye_K,
                                                           stride s, padding p, output_padding o,
                                                           groups C, dilation d)

``eye_K`` is (C·K, 1, kh, kw) (``_patch_convs.one_hot_kernel``): output channel c·K + i·kw + j
of group c takes tap (i, j) of the kernel, the row order of torch's columns. Exact in any
precision: each output is one product by 1, the rest by 0; where windows overlap (stride below
the kernel: VOLO's outlook attention, kernel 3, padding 1, stride 1 or 2) the transposed
convolution sums the patches an image entry belongs to, as ``col2im`` does. o = the rows (and
columns) of the image past the last window, which torch's fold leaves at zero: below s.

Why: coremltools converts ``im2col`` as a dense convolution of (C·K, C, kh, kw) one-hot weights
(C times the work and weights of the grouped one), and ``col2im`` only without overlap, padding
or dilation (as gathers); decomposed by torch.export, both are index arithmetic and an
accumulating ``index_put``, which it cannot convert. Run early, in ``windows``: ``layout`` then
sees convolutions, and the rank-≥5 views of the columns that follow (VOLO's (B, H, d, K, L)
heads) are in the same fixpoint as the rules that bring them to rank 4.
"""
from __future__ import annotations

from torch.fx import Node

from ane_rewrite.rewrite.graph import aten, shape, val
from ane_rewrite.rewrite.rules import MatchResult, Rule

from ._patch_convs import one_hot_kernel


def _pairs(*args) -> list[list[int]]:
    return [[int(v) for v in a] * (2 if len(a) == 1 else 1) for a in args]


def _positions(size: int, k: int, d: int, p: int, s: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _checked(node: Node, image_rank: int) -> MatchResult | None:
    """A decline for what has no convolution form, or None."""
    x = node.args[0]
    if val(x) is None or val(node) is None:
        return MatchResult.fail(f"{node.target.__name__}: no recorded shape on its input or output")
    if not val(x).is_floating_point():
        return MatchResult.fail(f"{node.target.__name__} of a {val(x).dtype} tensor: a convolution needs floats")
    if len(shape(x)) != image_rank and len(shape(x)) != image_rank - 1:
        return MatchResult.fail(f"{node.target.__name__} of a rank-{len(shape(x))} input")
    return None


def _match_unfold(node: Node) -> MatchResult:
    if (declined := _checked(node, 4)) is not None:
        return declined
    kernel, dilation, padding, stride = _pairs(*node.args[1:5])
    *_, c, h, w = shape(node.args[0])
    lh, lw = (_positions(n, *a) for n, a in zip((h, w), zip(kernel, dilation, padding, stride)))
    return MatchResult.ok(channels=c, image=[-1, c, h, w], positions=[lh, lw], kernel=kernel,
                          dilation=dilation, padding=padding, stride=stride)


def _match_fold(node: Node) -> MatchResult:
    if (declined := _checked(node, 3)) is not None:
        return declined
    (h, w), kernel, dilation, padding, stride = _pairs(*node.args[1:6])
    *_, ck, cols = shape(node.args[0])
    lh, lw = (_positions(n, *a) for n, a in zip((h, w), zip(kernel, dilation, padding, stride)))
    k = kernel[0] * kernel[1]
    if ck % k or lh * lw != cols or lh < 1 or lw < 1:
        return MatchResult.fail(f"col2im of columns {tuple(shape(node.args[0]))}: not C·{k} rows by "
                                f"{lh}·{lw} positions of an image {h}×{w}")
    # the rows (columns) the windows span, padding included
    spans = [(ll - 1) * ss + dd * (kk - 1) + 1 for ll, ss, dd, kk in zip((lh, lw), stride, dilation, kernel)]
    return MatchResult.ok(channels=ck // k, columns=[-1, ck, lh, lw], kernel=kernel, dilation=dilation,
                          padding=padding, stride=stride, image=[h, w], spans=spans)


def _weights(rw, node: Node, m: dict) -> Node:
    return rw.constant("unfold", one_hot_kernel(m["channels"], *m["kernel"], val(node).dtype))


def _rewrite_unfold(rw, node: Node, m: dict) -> Node:
    image = rw.call(aten.reshape.default, node.args[0], m["image"])
    out = rw.call(aten.conv2d.default, image, _weights(rw, node, m), None, m["stride"], m["padding"],
                  m["dilation"], m["channels"])
    return rw.call(aten.reshape.default, out, list(shape(node)))


def _rewrite_fold(rw, node: Node, m: dict) -> Node:
    cols = rw.call(aten.reshape.default, node.args[0], m["columns"])
    # the image is rows p … p + H of the windows' span: the padding cropped where the span ends p past the
    # image, else sliced, and zeros past the span (no output_padding: coremltools pads the input for it)
    exact = [span - 2 * p == n for span, p, n in zip(m["spans"], m["padding"], m["image"])]
    crop = [p if ok else 0 for p, ok in zip(m["padding"], exact)]
    out = rw.call(aten.conv_transpose2d.input, cols, _weights(rw, node, m), None, m["stride"], crop, [0, 0],
                  m["channels"], m["dilation"])
    for axis, (span, p, n) in enumerate(zip(m["spans"], m["padding"], m["image"])):
        if not exact[axis]:
            out = rw.call(aten.slice.Tensor, out, 2 + axis, p, min(span, p + n))
            if p + n > span:
                zeros = [0, p + n - span] if axis else [0, 0, 0, p + n - span]  # the last axis first
                out = rw.call(aten.constant_pad_nd.default, out, zeros)
    return rw.call(aten.reshape.default, out, list(shape(node)))


unfold_as_conv = Rule("unfold_as_conv", (aten.im2col,), _match_unfold, _rewrite_unfold,
                      "im2col (F.unfold) → one grouped conv2d with one-hot weights")
fold_as_conv = Rule("fold_as_conv", (aten.col2im,), _match_fold, _rewrite_fold,
                    "col2im (F.fold) → one grouped conv_transpose2d with one-hot weights")
UNFOLD_CONV_RULES = (unfold_as_conv, fold_as_conv)
