"""passes/_masks.py: masks as fp16-safe additive tensors (B, K, 1, Q); padding masks rebuilt
from the attention-mask input with arithmetic only.

    (p[:, None, None, :] != 0) & tril   →   (clamp(p, 0, 1) − 1) · 1e4 (B, K, 1, 1) + causal constant
"""
import torch

from ane_rewrite.hardware import MASKED_LOGIT
from ane_rewrite.passes._masks import additive_mask, padding_form
from ane_rewrite.rewrite.rules import Rewriter
from tests.helpers import captured


class PaddingMask(torch.nn.Module):
    """What a Hugging Face mask builder computes from its (B, S) attention mask."""

    def __init__(self, causal=True, cumulative=False):
        super().__init__()
        self.causal, self.cumulative = causal, cumulative

    def forward(self, p):
        s = p.shape[-1]
        keep = (p.cumsum(-1) if self.cumulative else p)[:, None, None, :] != 0
        if self.causal:
            keep = keep & torch.ones(s, s, dtype=torch.bool).tril()
        return keep


def _mask_node(module, p):
    gm = captured(module.eval(), (p,))
    return gm, next(n for n in gm.graph.nodes if n.op == "output").args[0][0]


def test_a_padding_mask_is_recognised_with_its_static_part():
    p = torch.ones(2, 6, dtype=torch.long)
    gm, mask = _mask_node(PaddingMask(), p)
    found = padding_form(gm, mask)
    assert found is not None
    pad, static = found.pad, found.static
    assert pad.op == "placeholder"
    tril = torch.ones(6, 6, dtype=torch.bool).tril()
    assert static.shape[-2:] == (6, 6) and all(torch.equal(s.reshape(6, 6), tril) for s in static)


def test_a_mask_that_is_no_padding_of_its_input_is_not_rebuilt():
    gm, mask = _mask_node(PaddingMask(cumulative=True), torch.ones(2, 6, dtype=torch.long))
    assert padding_form(gm, mask) is None  # cumsum: a zero does not mask its own key only


def test_causal_mask_is_a_finite_constant_laid_out_keys_first():
    gm, mask = _mask_node(PaddingMask(causal=False), torch.ones(1, 5, dtype=torch.long))
    plan = additive_mask(Rewriter(gm, mask, "test"), None, True, 5, 5)
    assert plan is not None and len(plan.adds) == 1 and not plan.zero_rows
    add = getattr(gm, plan.adds[0].target)  # (1, K, 1, Q)
    assert tuple(add.shape) == (1, 5, 1, 5)
    keys, queries = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    expected = torch.where(keys <= queries, 0.0, MASKED_LOGIT)
    torch.testing.assert_close(add[0, :, 0, :], expected)


def test_the_masked_value_is_finite_in_fp16_and_masks_completely():
    assert torch.tensor(MASKED_LOGIT, dtype=torch.float16).isfinite()
    logits = torch.tensor([0.0, 3.0, MASKED_LOGIT], dtype=torch.float16)
    assert float(torch.softmax(logits.float(), 0)[2]) == 0.0


def test_a_mask_that_carries_a_position_bias_is_not_taken_for_a_padding_pattern():
    """T5 adds its bucketed position bias and the padding mask into one float tensor: its values
    must be kept, so it is no keep pattern (it was once, and T5 came back at 43 dB)."""
    class BiasAndPadding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.randn(1, 2, 6, 6))

        def forward(self, p):
            pad = torch.where(p[:, None, None, :] != 0, 0.0, torch.finfo(torch.float32).min)
            return self.bias + pad

    gm, mask = _mask_node(BiasAndPadding(), torch.ones(2, 6, dtype=torch.long))
    assert padding_form(gm, mask) is None


class FloatPaddingMask(torch.nn.Module):
    """A float causal + padding mask, built three ways: "where" (dtype-min wherever either masks),
    "sum" (dtype-min + dtype-min = −inf where both mask), "e4" (−1e4 wherever either masks)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, p):
        s, low = p.shape[-1], torch.finfo(torch.float32).min
        causal, pad = torch.ones(s, s, dtype=torch.bool).triu(1), (p == 0)[:, None, None, :]
        if self.kind == "sum":
            return causal * low + pad * low
        return torch.where(causal | pad, low if self.kind == "where" else -1e4, 0.0)


def test_a_float_padding_mask_is_read_with_its_levels():
    """Which value an emptied row's keys hold decides what torch computes there."""
    p = torch.ones(2, 6, dtype=torch.long)
    forms = {kind: padding_form(*_mask_node(FloatPaddingMask(kind), p)) for kind in ("where", "sum", "e4")}
    assert all(f is not None for f in forms.values())
    assert (forms["where"].two_levels, forms["where"].absorbs) == (False, True)
    assert (forms["sum"].two_levels, forms["sum"].absorbs) == (True, True)
    assert (forms["e4"].two_levels, forms["e4"].absorbs) == (False, False)
