"""The default pipeline's options: one typed, checked object that the passes are built from.

A pass that depends on an option is made from it (``make_softmax_pass``,
``make_attention_pass``); nothing is read from the graph module's meta or from a module
global, so a test or a caller that wants another behaviour says so where it calls.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PassOptions:
    max_queries_per_chunk: int = 512  # softmax chunking: the most queries one chunk holds
    max_chunk_bytes: int = 1 << 20    # softmax chunking: the most bytes of logits one chunk holds
    lower_every_attention: bool = False  # lower per head even where the estimate says it does not pay

    def __post_init__(self):
        for name in ("max_queries_per_chunk", "max_chunk_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if not isinstance(self.lower_every_attention, bool):
            raise ValueError(f"lower_every_attention must be True or False, not {self.lower_every_attention!r}")
