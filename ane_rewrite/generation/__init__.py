"""Text generation on the ANE: a causal LM with a fixed-size KV cache in the (B, C, 1, S) layout,
prefill and decode rewritten by ``optimize``, greedy generation (``lm.py``; the step: ``step.py``);
exported as one stateful multifunction Core ML package and run here (``exported.py``, ``stateful.py``)."""
from .exported import generate_exported
from .lm import CausalLM, optimize_causal_lm

__all__ = ["CausalLM", "generate_exported", "optimize_causal_lm"]
