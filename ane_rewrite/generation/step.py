"""One step of a causal LM with a fixed-size KV cache, as a module ``optimize`` can capture.

Glossary: B batch, C a layer's key/value channels (kv heads × d), L the cache's length
(``max_len``), T the step's tokens (``prefill_len`` for prefill, 1 for decode), V vocabulary.

    CacheStep(input_ids_BT, position_1, k₀_BC1L, v₀_BC1L, k₁_BC1L, …)
        → (logits_BTV, k₀new_BC1T, v₀new_BC1T, k₁new_BC1T, …)

The tokens sit at positions ``position … position + T − 1``; the cache holds, in slot j, the
key/value of position j for every j < ``position`` (slots at or after it are stale and masked).
Every attention of the model (reached through the model-family adapter, ``models.use_attention``)
becomes, with its new keys k_BHTd after the model's own norms and rotary:

    k_new_BC1T = k_BHTd as channels-first          (what the step returns: the caller writes it
                                                    into slots position … position + T − 1)
    keys_BC1K  = cat([k_cache_BC1L, k_new_BC1T], 3)   K = L + T
    mask_TK    = key slot j < L: j < position       (and within the sliding window, if any)
                 key L + t:      t ≤ query index    (causal inside the step)
    sdpa(q, heads(keys_BC1K), heads(values_BC1K), mask_TK, scale)   (grouped-query heads read
                                                    their kv head: the cache holds kv heads only)

The cache is in the (B, C, 1, S) layout the passes produce, so the per-head attention reads
each head's keys and values as they lie (no transpose of the cache), and the new keys are
the key projection's channels-first output. Nothing is gathered or scattered: the mask is
arithmetic on the position, the write is the caller's.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from ..frontend import models

ATTENTION_NAME = "ane_rewrite_kv_cache"
_ACTIVE: list["_Run"] = []  # the step being run (the model's attention calls reach it)


class _Run:
    """One call of a CacheStep: its caches (None: the probe), position and the new keys/values."""

    def __init__(self, step: "CacheStep", caches, position):
        self.step, self.caches, self.position, self.new = step, caches, position, []


def _attend(query, key, value, scale, window, softcap):
    if not _ACTIVE:
        raise InputError("the KV-cache attention was called outside a CacheStep")
    return _ACTIVE[-1].step.attend(_ACTIVE[-1], query, key, value, scale, window, softcap)


def step_mask(position: torch.Tensor, tokens: int, cache_len: int, window: int | None) -> torch.Tensor:
    """mask_TK (bool, True = attend) for T = ``tokens`` queries at ``position`` over the cache's
    L slots then the step's own T keys."""
    q_abs = position + torch.arange(tokens)                          # (T,)
    k_abs = torch.cat([torch.arange(cache_len), q_abs])              # (L + T,)
    written = torch.cat([torch.arange(cache_len) < position, torch.ones(tokens, dtype=torch.bool)])
    causal = k_abs.unsqueeze(0) <= q_abs.unsqueeze(1)                # (T, L + T)
    mask = causal & written.unsqueeze(0)
    if window:
        mask = mask & (q_abs.unsqueeze(1) - k_abs.unsqueeze(0) < window)
    return mask


def eager_attention(q, k, v, mask, scale: float, softcap: float | None):
    """softmax(softcap(q·kᵀ·scale) masked)·v, for a model whose attention softcaps its logits."""
    if k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    logits = torch.matmul(q, k.transpose(2, 3)) * scale
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return torch.matmul(torch.softmax(logits, dim=-1), v)


class CacheStep(torch.nn.Module):
    """``model`` (a copy, its attention routed here) run on T tokens against per-layer caches."""

    def __init__(self, model: torch.nn.Module, cache_len: int):
        super().__init__()
        self.model = model
        self.cache_len = cache_len
        models.use_attention(model, ATTENTION_NAME, _attend)

    def cache_channels(self, example_ids: torch.Tensor) -> list[int]:
        """The key/value channels (kv heads × d) of each attention, in call order: a probe run."""
        with torch.no_grad():
            new = self(example_ids, torch.zeros(1, dtype=torch.long))[1:]
        channels = [t.shape[1] for t in new[::2]]
        if not channels:
            raise InputError(f"{type(self.model).__name__} calls no attention through transformers' attention "
                             "interface: its cache cannot be rewritten")
        return channels

    def attend(self, run: _Run, query, key, value, scale, window, softcap):
        i = len(run.new) // 2
        b, kv_heads, tokens, d = key.shape
        k_new = key.permute(0, 1, 3, 2).reshape(b, kv_heads * d, 1, tokens)     # (B, C, 1, T)
        v_new = value.permute(0, 1, 3, 2).reshape(b, kv_heads * d, 1, tokens)
        run.new += [k_new, v_new]
        if run.caches is None:  # the probe: no cache yet
            k_cache = v_cache = key.new_zeros(b, kv_heads * d, 1, self.cache_len)
        else:
            if 2 * i + 1 >= len(run.caches):
                raise InputError(f"the model calls more attentions than the {len(run.caches) // 2} caches given")
            k_cache, v_cache = run.caches[2 * i], run.caches[2 * i + 1]
        keys = self.cache_len + tokens
        k_all = torch.cat([k_cache, k_new], 3).reshape(b, kv_heads, d, keys).transpose(2, 3)   # (B, Hkv, K, d)
        v_all = torch.cat([v_cache, v_new], 3).reshape(b, kv_heads, d, keys).transpose(2, 3)
        mask = step_mask(run.position, tokens, self.cache_len, window)
        scale = scale if scale is not None else d ** -0.5
        if softcap:
            return eager_attention(query, k_all, v_all, mask, scale, softcap)
        return torch.nn.functional.scaled_dot_product_attention(
            query, k_all, v_all, attn_mask=mask, scale=scale, enable_gqa=query.shape[1] != kv_heads)

    def forward(self, input_ids: torch.Tensor, position: torch.Tensor, *caches: torch.Tensor):
        tokens = input_ids.shape[1]
        run = _Run(self, caches if caches else None, position)  # no caches: the probe
        position_ids = (position + torch.arange(tokens)).unsqueeze(0).expand(input_ids.shape[0], tokens)
        _ACTIVE.append(run)
        try:
            logits = models.causal_logits(self.model, input_ids, position_ids)
        finally:
            _ACTIVE.pop()
        if caches and len(run.new) != len(caches):
            raise InputError(f"the model called {len(run.new) // 2} attentions; {len(caches) // 2} caches were given")
        return (logits, *run.new)
