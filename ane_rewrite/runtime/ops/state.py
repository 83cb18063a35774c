"""State ops (iOS 18): read_state, coreml_update_state.

A state is a function input whose value lives across calls (a KV cache). ``read_state`` reads
it; ``coreml_update_state`` gives it a new value (and returns that value); the interpreter
keeps the value under the state's name for the ops after it and hands the last one back to the
caller (``interpreter.run(..., states=)``).
"""
from __future__ import annotations

from .registry import op


@op("read_state")
def read_state(a, out):
    return a["input"]


@op("coreml_update_state")
def coreml_update_state(a, out):
    return a["value"]
