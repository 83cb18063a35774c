"""Run what we ship: execute a saved ML Program (.mlpackage) on Linux, in fp32 or fp16.

    execute(model_or_path, inputs, precision="fp16") → {output name: numpy array}
    load(model_or_path) → Executable (load once, run many times)

``inputs``: a dict by the program's input names, or the example inputs the PyTorch model takes
(a tuple, or a dict of keyword arguments), matched to the program's inputs by name, else in
order. How precision and accumulation are modelled: ``interpreter.py``. Which ops: ``ops/``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ExecutionError
from . import interpreter
from .program import compile_program, load_program


class Executable:
    """A loaded and compiled ML Program: one function of it (``function``; by default ``main``,
    or a multifunction package's default function)."""

    def __init__(self, model_or_path, function: str | None = None):
        program, source = load_program(model_or_path)
        self.functions = sorted(program.functions)
        self.function = function or program.default_function_name
        self.compiled = compile_program(program, source, self.function)

    @property
    def input_names(self) -> list[str]:
        """The inputs a call gives (states are given apart: ``run(..., states=)``)."""
        return [n for n in self.compiled.inputs if n not in self.compiled.states]

    @property
    def state_names(self) -> list[str]:
        return list(self.compiled.states)

    def new_states(self) -> dict[str, torch.Tensor]:
        """Every state zeroed, as the Core ML runtime starts a new state."""
        return {n: torch.zeros(self.compiled.inputs[n].shape) for n in self.compiled.states}

    @property
    def output_names(self) -> list[str]:
        return list(self.compiled.outputs)

    def bind_inputs(self, inputs: Any) -> dict[str, Any]:
        """``inputs`` as a dict by the program's input names (see the module docstring)."""
        names = self.input_names
        if isinstance(inputs, dict) and set(inputs) == set(names):
            return dict(inputs)
        from torch.utils import _pytree as pytree

        flat = [v for v in pytree.tree_leaves(inputs) if isinstance(v, (torch.Tensor, np.ndarray))]
        if isinstance(inputs, dict):
            flat = [v for k, v in inputs.items() if isinstance(v, (torch.Tensor, np.ndarray))]
        if len(flat) != len(names):
            given = list(inputs) if isinstance(inputs, dict) else f"{len(flat)} tensors"
            raise ExecutionError(f"{self.compiled.source} takes inputs {names}; given {given}")
        return dict(zip(names, flat))

    def run(self, inputs: Any, precision: str = "fp16", observe=None, states: dict | None = None) -> dict[str, torch.Tensor]:
        """Outputs by name; ``states`` (a stateful program) are read and replaced by their new values."""
        return interpreter.run(self.compiled, self.bind_inputs(inputs), precision, observe, states)


def load(model_or_path, function: str | None = None) -> Executable:
    if isinstance(model_or_path, Executable):
        return model_or_path
    return Executable(model_or_path, function)


def execute(model_or_path, inputs: Any, precision: str = "fp16") -> dict[str, np.ndarray]:
    """The outputs of the saved ML Program on ``inputs``, as numpy arrays by output name."""
    outputs = load(model_or_path).run(inputs, precision)
    return {name: value.numpy() for name, value in outputs.items()}


__all__ = ["Executable", "ExecutionError", "execute", "load"]
