"""Text generation on the ANE: a causal LM with a fixed-size KV cache in the (B, C, 1, S) layout,
prefill and decode rewritten by ``optimize``, greedy generation (``lm.py``; the step: ``step.py``)."""
from .lm import CausalLM, optimize_causal_lm

__all__ = ["CausalLM", "optimize_causal_lm"]
