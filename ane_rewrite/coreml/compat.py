"""Gaps in coremltools 9.0's PyTorch converter, closed in one place.

coremltools 9.0's ExportedProgram frontend has no converter for these ATen ops, which
transformers 5 and timm emit when a graph is exported without decompositions (measured:
``NotImplementedError: Unsupported fx node ...``):

    new_ones            → const (static size) or fill + cast
    alias               → identity
    __and__             → logical_and (on bool casts)
    where.ScalarOther   → select(cond, x, scalar)
    as_strided          → reshape, when the strides are those of a contiguous tensor of that
                          size (size-1 axes aside) at offset 0, as the decompositions emit for
                          timm's pooled heads; any other striding is refused with its reason

And our own op: ``ane_rewrite::cache_write(cache, update, position)`` (a KV cache written at a
position, ``generation/stateful.py``) → ``slice_update(cache, update, begin=[0, 0, 0, p],
end=[B, C, H, p + T])``, the begin computed from the position input: one write of the step's
slots, which a state updates in place.

And one converter it has, but mishandles: ``max_pool{1,2,3}d[_with_indices]`` requires a stride
input, while ``torch.export`` leaves it out when it is the default (``F.max_pool2d(x, 2)``:
"got 2 input(s), expected minimum 3 inputs"); the wrapper adds stride = kernel size, torch's
default, before coremltools' converter runs. And ``scaled_dot_product_attention`` with a bool
mask: a query whose keys are all masked gets the mean of the values from coremltools, zeros
from torch (measured: GPT-2's padded queries under left padding, 39 dB); the wrapper multiplies
the output by whether each query keeps a key.

``install()`` registers a converter for each kind the installed coremltools lacks, and none it
has (and wraps the pooling converters once); it is idempotent and ``export`` calls it before every conversion. (``export`` also
decomposes the graph, which removes most of these ops; the converters cover graphs that keep
them.) ``export`` converts through ``torch.export`` (the ExportedProgram path), never
TorchScript, so coremltools' TorchScript path, which trips on numpy ≥ 2.4, is not on our way.
"""
from __future__ import annotations

import numpy as np

# the op kinds as coremltools' frontend spells them after ``sanitize_op_kind``
KINDS = ("new_ones", "alias", "__and__", "where.scalarother", "as_strided", "ane_rewrite::cache_write")


def _registry() -> dict:
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    return _TORCH_OPS_REGISTRY.name_to_func_mapping


def _converters() -> dict:
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.utils import NUM_TO_NUMPY_DTYPE
    from coremltools.converters.mil.mil import types

    def new_ones(context, node):
        # new_ones(self, size, dtype=None, layout=None, device=None, pin_memory=None)
        inputs = _get_inputs(context, node, min_expected=2)
        like, size = inputs[0], inputs[1]
        dtype = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        if dtype is not None and dtype.val is not None:
            np_dtype = NUM_TO_NUMPY_DTYPE[int(dtype.val)]
        else:
            np_dtype = types.nptype_from_builtin(like.dtype)
        if size.val is not None:
            context.add(mb.const(val=np.ones(tuple(int(s) for s in np.atleast_1d(size.val)), dtype=np_dtype),
                                 name=node.name))
            return
        ones = mb.fill(shape=size, value=1.0)
        builtin = types.numpy_type_to_builtin_type(np_dtype)
        context.add(mb.cast(x=ones, dtype=types.builtin_to_string(builtin), name=node.name))

    def alias(context, node):
        x = _get_inputs(context, node, expected=1)[0]
        context.add(mb.identity(x=x, name=node.name))

    def logical_and(context, node):
        x, y = _get_inputs(context, node, expected=2)
        x = x if x.dtype == types.bool else mb.cast(x=x, dtype="bool")
        y = y if y.dtype == types.bool else mb.cast(x=y, dtype="bool")
        context.add(mb.logical_and(x=x, y=y, name=node.name))

    def where_scalar_other(context, node):
        cond, x, other = _get_inputs(context, node, expected=3)
        cond = cond if cond.dtype == types.bool else mb.cast(x=cond, dtype="bool")
        other = mb.const(val=np.array(other.val, dtype=types.nptype_from_builtin(x.dtype)))
        context.add(mb.select(cond=cond, a=x, b=other, name=node.name))

    def as_strided(context, node):
        inputs = _get_inputs(context, node, min_expected=3)
        x, size, stride = inputs[0], inputs[1].val, inputs[2].val
        offset = inputs[3].val if len(inputs) > 3 and inputs[3] is not None else 0
        if size is None or stride is None:
            raise NotImplementedError(f"as_strided {node.name}: size and stride must be constants")
        size, stride = [int(v) for v in np.atleast_1d(size)], [int(v) for v in np.atleast_1d(stride)]
        expected, step = [], 1
        for dim in reversed(size):
            expected.append(step)
            step *= dim
        expected.reverse()
        contiguous = all(dim == 1 or s == e for dim, s, e in zip(size, stride, expected))
        if not contiguous or (offset or 0) != 0 or x.shape is None or int(np.prod(x.shape)) != int(np.prod(size)):
            raise NotImplementedError(f"as_strided {node.name}: size {size}, stride {stride}, offset {offset} "
                                      "is not a reshape of its input")
        context.add(mb.reshape(x=x, shape=size, name=node.name))

    def cache_write(context, node):
        cache, update, position = _get_inputs(context, node, expected=3)
        if update.dtype != cache.dtype:  # an fp16 model's update into a state read as fp32
            update = mb.cast(x=update, dtype=types.builtin_to_string(cache.dtype))
        *lead, _ = cache.shape
        tokens = update.shape[-1]
        start = mb.cast(x=mb.reshape(x=position, shape=[1]), dtype="int32")
        begin = mb.concat(values=[np.zeros(len(lead), dtype=np.int32), start], axis=0)
        end = mb.concat(values=[np.array(lead, dtype=np.int32), mb.add(x=start, y=np.int32(tokens))], axis=0)
        context.add(mb.slice_update(x=cache, update=update, begin=begin, end=end, name=node.name))

    return {"new_ones": new_ones, "alias": alias, "__and__": logical_and,
            "where.scalarother": where_scalar_other, "as_strided": as_strided,
            "ane_rewrite::cache_write": cache_write}


def missing_ops() -> list[str]:
    """The op kinds of this module that the installed coremltools cannot convert itself."""
    registry = _registry()
    return [kind for kind in KINDS if kind not in registry]


POOLS = ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
         "max_pool3d_with_indices")


def _with_default_stride(convert):
    def converter(context, node):
        if len(node.inputs) == 2:  # (input, kernel_size): torch's default stride is the kernel size
            kernel = node.inputs[1]
            stride = context[kernel].val.tolist() if isinstance(kernel, str) else kernel
            node.inputs = type(node.inputs)(list(node.inputs) + [stride])
        return convert(context, node)

    converter.ane_rewrite_wrapped = True
    return converter


def _with_torch_empty_rows(convert):
    """sdpa with a bool mask: torch gives zeros for a query whose keys are all masked (a padded
    query under a causal mask); coremltools' conversion gives the mean of the values there.
    The output is multiplied by whether the query's mask row keeps any key."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs, _get_kwinputs
    from coremltools.converters.mil.mil import types

    def converter(context, node):
        convert(context, node)
        inputs = _get_inputs(context, node, min_expected=3)
        mask = _get_kwinputs(context, node, "attn_mask", default=[inputs[3] if len(inputs) > 3 else None])[0]
        if mask is None or mask.dtype != types.bool:
            return
        out = context[node.name]
        kept = mb.cast(x=mask, dtype=types.builtin_to_string(out.dtype))
        any_key = mb.reduce_max(x=kept, axes=[-1], keep_dims=True)
        context.add(mb.mul(x=out, y=any_key, name=node.name + "_rows_kept"), torch_name=node.name, override=True)

    converter.ane_rewrite_wrapped = True
    return converter


def install() -> list[str]:
    """Register the missing converters; returns the kinds registered by this call."""
    missing = missing_ops()
    registry = _registry()
    if missing:
        converters = _converters()
        for kind in missing:
            registry[kind] = converters[kind]
    for kind in POOLS:
        if kind in registry and not getattr(registry[kind], "ane_rewrite_wrapped", False):
            registry[kind] = _with_default_stride(registry[kind])
    kind = "scaled_dot_product_attention"
    if kind in registry and not getattr(registry[kind], "ane_rewrite_wrapped", False):
        registry[kind] = _with_torch_empty_rows(registry[kind])
    return missing
