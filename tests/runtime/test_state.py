"""State ops (read_state, coreml_update_state) in the interpreter: a cache written at a position
from one call to the next, as the Core ML runtime keeps a state; a call without its states is
an error that names them.

    state cache (1, 4, 1, 6)  x (1, 4, 1, 2)  position (1,)
    read_state(cache) ─ slice_update(at position … position + 1) ─ coreml_update_state(cache) ─ reduce_sum(axis 3)
"""
import numpy as np
import pytest
import torch

import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import Function, Program, types

from ane_rewrite.errors import ExecutionError
from ane_rewrite.runtime import interpreter
from ane_rewrite.runtime.program import compile_program


def _program():
    inputs = {"cache": mb.state_tensor_placeholder(shape=(1, 4, 1, 6), dtype=types.fp16),
              "x": mb.placeholder(shape=(1, 4, 1, 2), dtype=types.fp16),
              "position": mb.placeholder(shape=(1,), dtype=types.int32)}
    prog = Program()
    with Function(inputs, opset_version=ct.target.iOS18) as fn:
        cache = mb.read_state(input=fn.inputs["cache"])
        begin = mb.concat(values=[np.zeros(3, dtype=np.int32), fn.inputs["position"]], axis=0)
        end = mb.concat(values=[np.array([1, 4, 1], dtype=np.int32), mb.add(x=fn.inputs["position"], y=np.int32(2))], axis=0)
        written = mb.slice_update(x=cache, update=fn.inputs["x"], begin=begin, end=end)
        updated = mb.coreml_update_state(state=fn.inputs["cache"], value=written)
        fn.set_outputs([mb.reduce_sum(x=updated, axes=[3])])
    prog.add_function("main", fn)
    return compile_program(prog, "state program")


def test_a_state_written_at_a_position_persists_across_calls():
    compiled = _program()
    assert compiled.states == ["cache"]
    states = {"cache": torch.zeros(1, 4, 1, 6)}
    x = torch.arange(8, dtype=torch.float32).reshape(1, 4, 1, 2)
    out = interpreter.run(compiled, {"x": x, "position": torch.tensor([1], dtype=torch.int32)}, "fp32", states=states)
    want = torch.zeros(1, 4, 1, 6)
    want[..., 1:3] = x
    torch.testing.assert_close(states["cache"], want)
    torch.testing.assert_close(next(iter(out.values())), want.sum(3))
    interpreter.run(compiled, {"x": -x, "position": torch.tensor([4], dtype=torch.int32)}, "fp32", states=states)
    want[..., 4:6] = -x
    torch.testing.assert_close(states["cache"], want)  # the first write kept, the second added


def test_a_call_without_its_states_names_them():
    compiled = _program()
    with pytest.raises(ExecutionError, match=r"has states \['cache'\]; given \[\]"):
        interpreter.run(compiled, {"x": torch.zeros(1, 4, 1, 2), "position": torch.tensor([0], dtype=torch.int32)}, "fp32")
