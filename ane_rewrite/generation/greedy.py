"""Greedy generation over a prefill and a decode function, whatever runs them: the rewritten
PyTorch steps (``lm.py``) or the exported packages executed here (``exported.py``)."""
from __future__ import annotations

import torch

from ..errors import InputError


def greedy(step, prompt: torch.Tensor, max_new_tokens: int, prefill_len: int, max_len: int, eos: set[int],
           pad_id: int) -> torch.Tensor:
    """The prompt and its greedy continuation, ``step(kind, ids, position)`` → logits (1, T, V) of
    the ``prefill`` (``prefill_len`` tokens) or ``decode`` (one token) function, which writes
    the step's keys and values into its cache. The prompt goes in chunks of ``prefill_len`` (a
    prompt shorter than a chunk is padded at its end; a longer one that does not fill its last
    chunk ends with a chunk overlapping the one before, so no position past the prompt is computed)."""
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.is_floating_point():
        raise InputError("input_ids must be a (1, N) tensor of token ids")
    if prompt.shape[0] != 1 or prompt.shape[1] == 0:
        raise InputError(f"generate takes one prompt of at least one token, (1, N); got {tuple(prompt.shape)}")
    n = prompt.shape[1]
    if n + max_new_tokens - 1 > max_len:
        raise InputError(f"{n} prompt tokens + {max_new_tokens} new tokens need {n + max_new_tokens - 1} cache "
                         f"slots; the cache holds max_len={max_len}")
    prompt = prompt.to(torch.long)
    if n <= prefill_len:
        chunk = torch.full((1, prefill_len), pad_id, dtype=torch.long)
        chunk[:, :n] = prompt
        logits = step("prefill", chunk, 0)[:, n - 1]
    else:
        starts = list(range(0, n - prefill_len + 1, prefill_len))
        if starts[-1] + prefill_len < n:
            starts.append(n - prefill_len)  # overlaps the chunk before: recomputes the same keys
        for start in starts:
            logits = step("prefill", prompt[:, start:start + prefill_len], start)[:, -1]
    tokens = prompt
    for i in range(max_new_tokens):
        token = logits.argmax(-1, keepdim=True)  # (1, 1)
        tokens = torch.cat([tokens, token.to(tokens.dtype)], 1)
        if int(token) in eos or i == max_new_tokens - 1:
            break
        logits = step("decode", token, n + i)[:, -1]
    return tokens
