"""Random inputs shaped like the example inputs: ``verify``'s and safe mode's draws."""
from __future__ import annotations

from typing import Any

import torch


def draw_inputs(example: Any, index: int) -> Any:
    """Draw ``index`` of inputs shaped like ``example``; draw 0 is the example itself.

    Floats: standard normal. Integers: uniform between the example's min and max (token ids
    stay in the vocabulary). Integers that are all 0 or 1 are masks, each row of a random
    length (at least 1), as a tokenizer pads: right-padded (ones, then zeros) in odd draws; in
    even ones the first row (and every other) left-padded (zeros, then ones: a decoder's batch,
    where a causal mask leaves the padded queries without a key), the others right-padded."""
    if index == 0:
        return example
    from torch.utils import _pytree as pytree

    gen = torch.Generator().manual_seed(1000 + index)

    def draw(t):
        if not isinstance(t, torch.Tensor) or t.dtype == torch.bool:
            return t
        if t.is_floating_point():
            return torch.randn(t.shape, generator=gen, dtype=t.dtype)
        low, high = int(t.min()), int(t.max())
        if low >= 0 and high <= 1 and t.dim() >= 1 and t.shape[-1] > 0:
            length = t.shape[-1]
            kept = torch.randint(1, length + 1, t.shape[:-1] + (1,), generator=gen)
            right = (torch.arange(length) < kept).to(t.dtype)
            if index % 2:
                return right
            left = (torch.arange(length) >= length - kept).to(t.dtype)
            rows = torch.arange(t.shape[0] if t.dim() > 1 else 1).reshape(-1, *[1] * (t.dim() - 1))
            return torch.where(rows % 2 == 0, left, right) if t.dim() > 1 else left
        return torch.randint(low, high + 1, t.shape, generator=gen, dtype=t.dtype)

    return pytree.tree_map(draw, example)
