"""Gaps in coremltools 9.0's PyTorch converter, closed in one place.

coremltools 9.0 has no converter for a few ATen ops that transformers 5 emits when a graph is
exported without decompositions: ``new_ones``, ``__and__`` and ``alias``. ``install()``
registers one for each that the installed coremltools lacks (and none it already has); it is
called by ``export`` before every conversion and is idempotent.

``export`` converts through ``torch.export`` (the ExportedProgram path), never TorchScript, so
coremltools' TorchScript path, which trips on numpy ≥ 2.4, is not on our way.
"""
from __future__ import annotations


def _registry():
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    return _TORCH_OPS_REGISTRY


def _converters():
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.utils import NUM_TO_NUMPY_DTYPE
    from coremltools.converters.mil.mil import types

    def ane_new_ones(context, node):
        # new_ones(self, size, dtype=None, layout=None, device=None, pin_memory=None)
        inputs = _get_inputs(context, node, min_expected=2)
        like, size = inputs[0], inputs[1]
        dtype = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        if dtype is not None and dtype.val is not None:
            np_dtype = NUM_TO_NUMPY_DTYPE[dtype.val]
        else:
            np_dtype = types.nptype_from_builtin(like.dtype)
        if size.val is not None:
            import numpy as np

            value = np.ones(tuple(int(s) for s in size.val), dtype=np_dtype)
            context.add(mb.const(val=value, name=node.name))
            return
        ones = mb.fill(shape=size, value=1.0)
        context.add(mb.cast(x=ones, dtype=types.builtin_to_string(types.numpy_type_to_builtin_type(np_dtype)),
                            name=node.name))

    def ane_and(context, node):
        x, y = _get_inputs(context, node, expected=2)
        if x.dtype != types.bool:
            x = mb.cast(x=x, dtype="bool")
        if y.dtype != types.bool:
            y = mb.cast(x=y, dtype="bool")
        context.add(mb.logical_and(x=x, y=y, name=node.name))

    def ane_alias(context, node):
        (x,) = _get_inputs(context, node, expected=1)
        context.add(mb.identity(x=x, name=node.name))

    return {"new_ones": ane_new_ones, "__and__": ane_and, "alias": ane_alias}


def missing_ops() -> list[str]:
    """The ops of this module that the installed coremltools cannot convert by itself."""
    registry = _registry()
    return [name for name in ("new_ones", "__and__", "alias") if registry.get_func(name) is None]


def install() -> list[str]:
    """Register the missing converters; returns the names registered by this call."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    added = []
    converters = _converters()
    for name in missing_ops():
        register_torch_op(converters[name], torch_alias=[name])
        added.append(name)
    return added
