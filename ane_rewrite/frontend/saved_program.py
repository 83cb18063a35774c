"""A saved ``torch.export`` program (``.pt2``) as a source: the module and its example inputs.

``load_saved_program(path)`` gives the program as a module in the form capture gives (core ATen
but the kept ops, views as reshapes), so it converts as it is and rewrites like a captured model;
its parameter names are the program's. ``saved_program_inputs`` gives the example inputs saved
with it: its shapes are static, so another sequence length or batch is an error.
"""
from __future__ import annotations

import types

import torch

from ..errors import InputError, SourceError
from .aten_form import decomposition_table, views_as_reshapes


def load_saved_program(path: str) -> torch.nn.Module:
    """A saved ``torch.export`` program as a module, in the form capture gives, keeping its example
    inputs. The program was captured in one mode, so train()/eval() change nothing (torch
    refuses both on it)."""
    try:
        program = torch.export.load(path)
    except Exception as exc:
        raise SourceError(f"{path} is not a saved torch.export program: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    if program.example_inputs is None:
        raise SourceError(f"{path} holds no example inputs; save the program of torch.export.export"
                          "(model, args) as it comes (its example inputs are saved with it)")
    # in the form capture gives (core ATen but the kept ops, views as reshapes): it converts as it is
    module = program.run_decompositions(decomposition_table()).module()
    views_as_reshapes(module)
    module.train = types.MethodType(lambda self, mode=True: self, module)
    module.eval = types.MethodType(lambda self: self, module)
    module.ane_exported_inputs = program.example_inputs
    return module


def saved_program_inputs(saved: tuple, seq_len: int | None, batch: int | None) -> dict | tuple:
    args, kwargs = saved
    if args and kwargs:
        raise InputError("the saved program takes positional and keyword inputs together; pass example_inputs=")
    tensors = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor) and t.dim() > 0]
    if batch is not None and any(t.shape[0] != batch for t in tensors):
        raise InputError(f"the saved program was exported for batch {tensors[0].shape[0]} (static shapes); "
                         f"export it again for batch {batch}")
    if seq_len is not None and not any(seq_len in t.shape[1:] for t in tensors):
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise InputError(f"the saved program was exported for inputs {shapes} (static shapes): none has "
                         f"length {seq_len}; export it again at that length")
    return dict(kwargs) if kwargs else tuple(args)
