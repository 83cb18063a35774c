"""Run a compiled ML Program on torch (CPU), in fp32 or in fp16.

Precision:

    fp32   every float value is float32, whatever the program declares; fp16 weights are read
           as stored (widened exactly), a cast to fp16 keeps float32. This checks the program's
           function — our passes, our converters, coremltools' passes — apart from precision.
    fp16   each value the program declares fp16 is rounded to float16 when its op produces it
           (round to nearest even; beyond ±65504 it is ±inf, below 2⁻²⁴ it is 0); fp32 values
           stay float32. Accumulation is modelled as fp32 inside an op: an op reads its fp16
           inputs exactly, computes in float32 (sums, dot products, means, softmax's
           normaliser) and rounds its result once. The ANE's internal accumulators are not
           documented; this is the per-op-rounding model (the error of storing every value in
           fp16), not a bit-exact emulation of a device.

Integer values are int32 (or the declared integer type), bools bool, as declared.

States (iOS 18): inputs whose values the caller keeps across calls (``run(..., states=)``, a dict
by state name, updated in place with each state's last value); ``coreml_update_state`` gives
its state a new value for the ops after it.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import ExecutionError
from .ops import Out
from .program import Compiled, Step

PRECISIONS = ("fp32", "fp16")

_INTS = {"int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32,
         "int64": torch.int64, "uint16": torch.int32, "uint32": torch.int64, "bool": torch.bool}


def as_declared(value: torch.Tensor, out: Out, precision: str) -> torch.Tensor:
    """``value`` converted to the dtype ``out`` declares, under ``precision``."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    dtype = out.dtype
    if dtype == "fp16":
        value = value.to(torch.float32)
        return value.to(torch.float16).to(torch.float32) if precision == "fp16" else value
    if dtype in ("fp32", "fp64"):
        return value.to(torch.float32)
    target = _INTS.get(dtype)
    return value.to(target) if target is not None and value.dtype != target else value


def _arg(binding, env):
    kind, value = binding
    if kind == "var":
        return env[value]
    if kind == "list":
        return [_arg(b, env) for b in value]
    return value


def run_step(step: Step, env: dict[str, Any], precision: str) -> list[torch.Tensor]:
    """Run one op on the values in ``env`` and store its outputs there."""
    args = {name: _arg(b, env) for name, b in step.args.items()}
    try:
        with torch.no_grad():
            result = step.fn(args, step.out)
    except ExecutionError:
        raise
    except Exception as exc:  # an op that cannot run on these values: say which
        shapes = {k: tuple(v.shape) for k, v in args.items() if isinstance(v, torch.Tensor)}
        raise ExecutionError(f"{step.location} failed on inputs {shapes}: {type(exc).__name__}: {exc}") from exc
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != len(step.outputs):
        raise ExecutionError(f"{step.location}: produced {len(results)} values for {len(step.outputs)} outputs")
    values = []
    for name, out, value in zip(step.outputs, step.out, results):
        value = as_declared(value, out, precision)
        if out.shape and -1 not in out.shape and tuple(value.shape) != out.shape:
            raise ExecutionError(f"{step.location}: computed shape {tuple(value.shape)} for {name}, "
                                 f"the program declares {out.shape}")
        env[name] = value
        values.append(value)
    if step.type == "coreml_update_state":  # the state itself takes the value, for the ops after it
        env[step.args["state"][1]] = values[0]
    return values


def _tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(value)))


def bind(compiled: Compiled, inputs: dict[str, Any], precision: str) -> dict[str, Any]:
    """The environment before the first op: the consts and the inputs (states included), checked
    against the program."""
    missing = [n for n in compiled.inputs if n not in inputs]
    extra = [n for n in inputs if n not in compiled.inputs]
    if missing or extra:
        raise ExecutionError(f"inputs of {compiled.source} are {list(compiled.inputs)}; "
                             f"missing {missing}, unknown {extra}")
    env = dict(compiled.consts)
    for name, out in compiled.inputs.items():
        value = _tensor(inputs[name])
        if tuple(value.shape) != out.shape:
            raise ExecutionError(f"input {name} has shape {tuple(value.shape)}; {compiled.source} takes {out.shape}")
        if value.is_floating_point() != (out.dtype in ("fp16", "fp32", "fp64")):
            raise ExecutionError(f"input {name} is {value.dtype}; {compiled.source} takes {out.dtype}")
        env[name] = as_declared(value, out, precision)
    return env


def run(compiled: Compiled, inputs: dict[str, Any], precision: str = "fp16",
        observe: Callable[[Step, list[torch.Tensor]], None] | None = None,
        states: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The program's outputs on ``inputs`` (by name). ``observe(step, values)`` sees every op's
    outputs. ``states``: the value of every state input, replaced by its value after the run."""
    if precision not in PRECISIONS:
        raise ExecutionError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    states = {} if states is None else states
    expected = set(compiled.states)
    if set(states) != expected:
        raise ExecutionError(f"{compiled.source} has states {sorted(expected)}; given {sorted(states)}")
    env = bind(compiled, {**inputs, **states}, precision)
    for step in compiled.steps:
        values = run_step(step, env, precision)
        if observe is not None:
            observe(step, values)
    for name in expected:
        states[name] = env[name]
    return {name: env[name] for name in compiled.outputs}
