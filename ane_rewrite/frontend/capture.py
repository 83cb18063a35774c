"""Capture: a deep copy of the model, in eval mode, as an ATen-level GraphModule.

``torch.export.export(..., strict=False)`` with static shapes, then the default core-ATen
decompositions *except* the ops the passes (and coremltools) want whole: linear, conv,
layer_norm, softmax, attention, einsum, gelu, embedding, roll (coremltools converts
roll whole; decomposed, it becomes index arithmetic with fmod, which it cannot convert),
``F.unfold`` / ``F.fold`` as ``im2col`` / ``col2im`` (coremltools converts both whole;
decomposed, they become gathers and an accumulating ``index_put``, which it cannot convert).
The captured graph's views are then made reshapes (``views_as_reshapes``; both in
``aten_form.py``, which a saved program is brought to as well). ``export_program``
is the capture itself; Core ML export uses it for a model as is (the baseline).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch.fx import GraphModule

from ..errors import CaptureError, InputError
from .aten_form import decomposition_table, views_as_reshapes
from .experts import dense_experts
from .models import prepare

def split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """Example inputs are a tuple of positional arguments or a dict of keyword arguments."""
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, tuple):
        return example_inputs, {}
    if isinstance(example_inputs, torch.Tensor):
        raise InputError("example inputs must be a tuple of positional arguments or a dict of "
                         "keyword arguments; wrap a single tensor as (tensor,)")
    raise InputError(f"example inputs must be a tuple or a dict, not {type(example_inputs).__name__}")


def call(model: torch.nn.Module, example_inputs: Any, **extra):
    args, kwargs = split_inputs(example_inputs)
    return model(*args, **kwargs, **extra)


def _describe(args: tuple, kwargs: dict) -> str:
    def one(v):
        return f"{tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}" if isinstance(v, torch.Tensor) else type(v).__name__

    return "(" + ", ".join([one(a) for a in args] + [f"{k} {one(v)}" for k, v in kwargs.items()]) + ")"


def export_program(model: torch.nn.Module, example_inputs: Any) -> torch.export.ExportedProgram:
    """torch.export (non-strict, static shapes) and the decompositions above."""
    args, kwargs = split_inputs(example_inputs)
    try:
        with torch.no_grad():
            ep = torch.export.export(model, args, kwargs, strict=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = (" (data-dependent control flow: the model branches on the values of a tensor, which a "
                "static graph cannot hold)" if "data-dependent" in str(exc) or "data dependent" in str(exc) else "")
        raise CaptureError(f"torch.export could not capture {type(model).__name__} with the example inputs "
                           f"{_describe(args, kwargs)}: {type(exc).__name__}: {first}{hint}") from exc
    return ep.run_decompositions(decomposition_table())


def check_model(model: Any, example_inputs: Any) -> None:
    """What can be told before capture: a module; finite weights; keyword inputs that its
    ``forward`` names (an input only a ``**kwargs`` would swallow is a typo, or ignored)."""
    import inspect

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    bad = [name for name, t in list(model.named_parameters()) + list(model.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise InputError(f"the model's weights hold NaN or inf: {', '.join(bad[:3])}{more}")
    args, kwargs = split_inputs(example_inputs)
    params = inspect.signature(model.forward).parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(named))
    if unknown and named:
        raise InputError(f"{type(model).__name__}.forward takes no input {', '.join(map(repr, unknown))}; "
                         f"its inputs are {', '.join(named)}")
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if args and len(args) > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InputError(f"{type(model).__name__}.forward takes {len(positional)} positional inputs, "
                         f"{len(args)} given")


def capture(model: torch.nn.Module, example_inputs: Any, dense_moe: bool = False) -> GraphModule:
    """A GraphModule computing ``model`` (a deep copy, in eval mode), same parameter names.
    ``dense_moe``: its mixture-of-experts collections evaluated densely (``experts.dense_experts``,
    what ``optimize`` captures); otherwise in transformers' static form, as the model as it is is
    exported."""
    check_model(model, example_inputs)
    copied = prepare(copy.deepcopy(model))
    if dense_moe:
        dense_experts(copied)
    gm = export_program(copied, example_inputs).module()
    views_as_reshapes(gm)
    return gm
