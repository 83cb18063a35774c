"""optimize_causal_lm(model) → CausalLM: prefill and decode rewritten for the ANE, a KV cache, greedy generation.

    prefill: CacheStep on ``prefill_len`` tokens, rewritten by ``optimize``
    decode:  CacheStep on 1 token, rewritten by ``optimize``   (the same parameters: shared)
    caches:  per attention, k and v of shape (B, C, 1, max_len), C = kv heads × head size

``generate`` runs the prompt through ``prefill`` in chunks of ``prefill_len`` tokens, then one
``decode`` step per new token (``greedy``), each step's new keys and values written into the
cache slots of its positions. ``export`` writes both functions into one Core ML package, the
caches as states (``exported.py``). Greedy, and it stops where Hugging Face's ``generate(do_sample=False)`` stops: after
``max_new_tokens`` tokens or at an end-of-sequence token of the model's generation config.

Every attention is lowered per head (``lower_every_attention``): the cache is kept in the
(B, C, 1, S) layout, which the per-head form reads as it lies, where a batched attention would
transpose the whole cache into (B, H, S, d) at every step.
"""
from __future__ import annotations

import copy

import torch
from torch.fx import GraphModule

from ..errors import InputError
from ..frontend import models
from ..hardware import MAX_WEIGHTS_BYTES
from ..optimize import optimize
from .greedy import greedy
from .step import CacheStep


class CausalLM:
    """A rewritten causal LM with its KV cache. ``prefill`` and ``decode`` are the rewritten
    GraphModules (``.ane_report`` on each); ``channels`` the key/value channels per attention."""

    def __init__(self, prefill: GraphModule, decode: GraphModule, channels: list[int], max_len: int,
                 prefill_len: int, eos: set[int], pad_id: int):
        self.prefill, self.decode = prefill, decode
        self.channels, self.max_len, self.prefill_len = channels, max_len, prefill_len
        self.eos, self.pad_id = eos, pad_id

    def new_caches(self, batch: int = 1) -> list[torch.Tensor]:
        """Zeroed caches: k and v of each attention, (B, C, 1, max_len)."""
        return [torch.zeros(batch, c, 1, self.max_len) for c in self.channels for _ in "kv"]

    def step(self, fn: GraphModule, ids: torch.Tensor, position: int, caches: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B, T, V) of ``ids`` at ``position``; their keys and values written into ``caches``."""
        outputs = fn(ids, torch.tensor([position]), *caches)
        logits, new = outputs[0], outputs[1:]
        for cache, values in zip(caches, new):
            cache[..., position:position + ids.shape[1]] = values
        return logits

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 32) -> torch.Tensor:
        """Greedy generation: the prompt followed by up to ``max_new_tokens`` tokens, (1, N + new)."""
        caches = self.new_caches()
        functions = {"prefill": self.prefill, "decode": self.decode}
        with torch.no_grad():
            return greedy(lambda kind, ids, position: self.step(functions[kind], ids, position, caches),
                          input_ids, max_new_tokens, self.prefill_len, self.max_len, self.eos, self.pad_id)

    def export(self, path, *, precision: str = "fp16", overwrite: bool = False, progress: bool = False,
               max_chunk_bytes: int = MAX_WEIGHTS_BYTES) -> list:
        """One ML Program package (iOS 18) with functions ``prefill`` and ``decode`` sharing
        weights, the caches as Core ML states (``stateful.py``) — or, past ``max_chunk_bytes`` of
        weights (1 GB), chunk packages run in sequence (``exported.py``). Returns the paths
        written; ``generate_exported`` runs them."""
        from .exported import export_lm

        return export_lm(self, path, precision=precision, overwrite=overwrite, progress=progress,
                         max_chunk_bytes=max_chunk_bytes)


def _share_parameters(source: GraphModule, target: GraphModule) -> None:
    """``target`` reads ``source``'s tensors wherever a parameter or buffer has the same name and value."""
    every = {"remove_duplicate": False}  # tied weights under each of their names
    owned = dict(source.named_parameters(**every)) | dict(source.named_buffers(**every))
    for name, tensor in list(target.named_parameters(**every)) + list(target.named_buffers(**every)):
        mine = owned.get(name)
        if mine is not None and mine.shape == tensor.shape and mine.dtype == tensor.dtype and torch.equal(mine, tensor):
            owner, _, attr = name.rpartition(".")
            module = target.get_submodule(owner) if owner else target
            if isinstance(tensor, torch.nn.Parameter):
                setattr(module, attr, mine)
            else:
                module._buffers[attr] = mine


def optimize_causal_lm(model: torch.nn.Module, max_len: int = 256, prefill_len: int = 64, *,
                       safe: bool = True, strict: bool = False, **options) -> CausalLM:
    """Rewrite a Hugging Face causal LM for the ANE with a fixed-size KV cache of ``max_len``
    positions: ``prefill`` takes ``prefill_len`` tokens a step, ``decode`` one. ``model`` is not
    modified; ``safe``, ``strict`` and ``options`` are ``optimize``'s, for both functions."""
    models.check_causal_lm(model)
    if not (isinstance(max_len, int) and isinstance(prefill_len, int) and 1 <= prefill_len <= max_len):
        raise InputError(f"need 1 ≤ prefill_len ≤ max_len (integers); got prefill_len={prefill_len!r}, "
                         f"max_len={max_len!r}")
    vocab, limit, pad = models.causal_lm_config(model)
    if limit and max_len > limit:
        raise InputError(f"max_len={max_len} exceeds the model's {limit} positions")
    step = CacheStep(models.prepare(copy.deepcopy(model)), max_len)
    channels = step.cache_channels(torch.zeros(1, 1, dtype=torch.long))
    gen = torch.Generator().manual_seed(models.SEED)
    caches = tuple(torch.randn(1, c, 1, max_len, generator=gen) for c in channels for _ in "kv")
    options = {"lower_every_attention": True, **options}
    graphs = []
    for tokens in (prefill_len, 1):
        example = (torch.randint(0, vocab, (1, tokens), generator=gen), torch.tensor([max_len - tokens]), *caches)
        graphs.append(optimize(step, example, safe=safe, strict=strict, **options))
    prefill, decode = graphs
    _share_parameters(prefill, decode)
    return CausalLM(prefill, decode, channels, max_len, prefill_len, models.eos_token_ids(model), pad)
