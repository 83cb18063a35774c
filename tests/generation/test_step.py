"""The KV-cache step: its mask against a brute-force definition (hypothesis over positions,
lengths and windows), and the step against the model run on the whole sequence."""
import torch
from hypothesis import given, settings, strategies as st

from ane_rewrite.generation.step import CacheStep, step_mask
from tests import decoders


@settings(max_examples=60, deadline=None)
@given(cache_len=st.integers(1, 40), tokens=st.integers(1, 12), data=st.data(),
       window=st.one_of(st.none(), st.integers(1, 20)))
def test_mask_is_the_causal_mask_over_written_slots(cache_len, tokens, data, window):
    position = data.draw(st.integers(0, cache_len))
    mask = step_mask(torch.tensor([position]), tokens, cache_len, window)
    assert mask.shape == (tokens, cache_len + tokens) and mask.dtype == torch.bool
    for i in range(tokens):
        q = position + i
        for j in range(cache_len + tokens):
            k = j if j < cache_len else position + j - cache_len
            written = j < position or j >= cache_len
            want = written and k <= q and (window is None or q - k < window)
            assert bool(mask[i, j]) == want, (i, j)


def test_a_step_after_a_cache_computes_the_whole_sequence():
    """Logits of tokens 8…11 through the step, given the cache of tokens 0…7, are the model's
    logits on all 12 tokens at those positions."""
    import copy

    model = decoders.build("llama")
    step = CacheStep(copy.deepcopy(model), cache_len=16)
    ids = torch.randint(1, 1000, (1, 12), generator=torch.Generator().manual_seed(0))
    caches = [torch.full((1, c, 1, 16), 7.0) for c in step.cache_channels(ids[:, :1]) for _ in "kv"]  # stale: masked
    with torch.no_grad():
        first = step(ids[:, :8], torch.tensor([0]), *caches)
        for cache, new in zip(caches, first[1:]):
            cache[..., :8] = new
        second = step(ids[:, 8:], torch.tensor([8]), *caches)[0]
        whole = model(ids, use_cache=False).logits
    torch.testing.assert_close(second, whole[:, 8:], rtol=1e-4, atol=1e-5)
