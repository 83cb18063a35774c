"""passes/_eager_attention.py: eager attention → one sdpa call, and masks added in a regrouped view.

    matmul ─ [·c] ─ [+mask] ─ softmax ─ matmul   →   sdpa(q, k, v, mask, scale=c)
"""
import pytest
import torch

from ane_rewrite.passes._attention_cost import lower_regardless
from ane_rewrite.passes._eager_attention import _groups, eager_to_sdpa_rule, regrouped_mask_add
from ane_rewrite.passes.layout import layout
from ane_rewrite.rewrite.rules import Pass
from tests import zoo
from ane_rewrite.rewrite.graph import depends_on
from tests.helpers import captured, count, outputs

CANONICALISE = Pass("canonicalise", [regrouped_mask_add, eager_to_sdpa_rule(lower_regardless)])  # toy sizes: lower


@pytest.mark.parametrize("form", ["eager", "eager_q_scaled"])
def test_eager_forms_become_one_sdpa_with_the_same_values(form):
    module = zoo.SelfAttention(c=32, heads=4, form=form).eval()
    example = (torch.randn(2, 9, 32),)
    gm = captured(module, example)
    layout(gm)  # the heads the canonical form needs are splits of (B, C, 1, S) projections
    assert count(gm, "scaled_dot_product_attention") == 0
    result = CANONICALISE(gm)
    assert result.counts == {"eager_to_sdpa": 1}
    assert count(gm, "scaled_dot_product_attention") == 1 and count(gm, "_softmax") + count(gm, "softmax") == 0
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not CANONICALISE(gm).changed


def test_heads_that_are_no_split_of_a_projection_are_declined():
    module = zoo.SelfAttention(c=32, heads=4, form="eager").eval()
    result = CANONICALISE(captured(module, (torch.randn(2, 9, 32),)))  # no layout: (B, S, C) projections
    assert not result.changed
    assert [d.reason for d in result.declined] == [
        "q, k and v are not head splits of the channel axis of (B, C, 1, S) tensors"]


def test_a_softmax_not_over_a_product_is_declined_with_its_reason():
    class NotAttention(torch.nn.Module):
        def forward(self, x, v):
            return torch.matmul(torch.softmax(x.exp(), dim=-1), v)

    gm = captured(NotAttention().eval(), (torch.randn(2, 5, 5), torch.randn(2, 5, 3)))
    result = CANONICALISE(gm)
    assert not result.changed
    assert [d.reason for d in result.declined] == ["softmax input is not [mask +] [scale ·] matmul(q, kᵀ)"]


@pytest.mark.parametrize("outer,inner,groups", [
    ((128, 3, 49, 49), (2, 64, 3, 49, 49), [[0, 1], [2], [3], [4]]),
    ((6, 4), (2, 3, 4), [[0, 1], [2]]),
    ((6, 4), (4, 6), None),
])
def test_regrouping_of_axes(outer, inner, groups):
    assert _groups(outer, inner) == groups


@pytest.mark.parametrize("adds", [1, 2])
def test_masks_added_in_a_regrouped_view_become_adds_of_the_logits(adds):
    """Swin adds its shift mask in a (B, nW, H, N, N) view of the (B·nW, H, N, N) logits;
    Hugging Face's Swin v2 adds it twice: each add becomes one of the logits themselves."""
    class Regrouped(torch.nn.Module):
        def forward(self, logits, mask):
            x = logits.view(2, 4, 3, 5, 5)
            for _ in range(adds):
                x = x + mask.unsqueeze(1).unsqueeze(0)
            return x.view(8, 3, 5, 5).softmax(-1)

    example = (torch.randn(8, 3, 5, 5), torch.randn(4, 5, 5))
    gm = captured(Regrouped(), example)
    assert CANONICALISE(gm).counts == {"regrouped_mask_add": 1}
    logits = next(n for n in gm.graph.nodes if n.op == "placeholder")
    rank5 = [n for n in gm.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor) and n.meta["val"].dim() > 4]
    assert not any(depends_on(n, {logits}) for n in rank5)  # only the mask's own regrouping (a constant in Swin)
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), Regrouped()(*example))
