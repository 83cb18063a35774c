"""passes/_attention_cost.py: an attention is lowered per head only where the estimator's model
says it pays on every chip; else it is left batched, with the figures in the reason."""
import pytest
import torch

import ane_rewrite
from ane_rewrite.passes._attention_cost import COST_REASON, per_head_pays
from ane_rewrite.rewrite.rules import COST
from tests.helpers import count
from tests.passes.test_logit_steps import B, C, S, Steps



def test_a_long_attention_pays_and_a_tiny_one_does_not():
    assert per_head_pays(1, 12, 512, 512, 64, 64, masked=True) is None          # DistilBERT, seq 512
    assert per_head_pays(1, 8, 1500, 1500, 64, 64, masked=False) is None        # Whisper's encoder
    assert per_head_pays(64, 3, 49, 49, 32, 32, masked=True) is None            # Swin-T's 7×7 windows
    reason = per_head_pays(1, 8, 49, 49, 32, 128, masked=False)                  # EfficientFormer-L1
    assert reason is not None and reason.startswith(COST_REASON) and "µs" in reason


def test_where_the_forms_are_close_the_chip_where_per_head_loses_decides():
    """One head over 640 tokens: per head is estimated faster on the chips whose cache its
    logits overflow at a low DRAM rate (A14, M1) and slower on those with more compute per byte
    (M4): left batched, the reason naming the chip where it loses most."""
    from ane_rewrite.hardware import CHIPS
    from ane_rewrite.passes._attention_cost import _times_us

    times = {name: _times_us(chip, 1, 1, 640, 640, 64, 64, True) for name, chip in CHIPS.items()}
    assert times["A14"][1] < times["A14"][0] and times["M4"][1] > times["M4"][0]
    reason = per_head_pays(1, 1, 640, 640, 64, 64, masked=True)
    worst = max((n for n in times if times[n][1] > times[n][0]), key=lambda n: times[n][1] / times[n][0])
    assert reason is not None and f"on {worst}" in reason


def test_distilbert_lengths_cross_over_where_the_logits_leave_the_cache():
    """12 heads: at 128 and 256 tokens all heads' logits fit the on-chip cache and the per-head
    form's 48 more ops lose; at 512 they do not, and per head pays on every chip."""
    assert per_head_pays(1, 12, 128, 128, 64, 64, masked=True) is not None
    assert per_head_pays(1, 12, 256, 256, 64, 64, masked=True) is not None
    assert per_head_pays(1, 12, 512, 512, 64, 64, masked=True) is None


def test_a_toy_attention_is_left_batched_with_its_reason_and_its_projections_converted():
    torch.manual_seed(0)
    module, example = Steps("softcap").eval(), (torch.randn(B, S, C),)
    fast = ane_rewrite.optimize(module, example)
    declined = [d for r in fast.ane_report.results for d in r.declined if d.kind == COST and d.reason.startswith(COST_REASON)]
    assert len(declined) == 1 and count(fast, "_softmax") == 0
    assert count(fast, "linear") == 0 and count(fast, "conv2d") == 4  # not a region kept as it was
    assert ane_rewrite.verify(module, fast, example, draws=2).ok
    forced = ane_rewrite.optimize(module, example, lower_every_attention=True)
    assert forced.ane_report.counts()["attention"]["eager_logit_steps"] == 1


def test_heads_read_as_they_lie_spare_the_batched_form_its_four_transposes():
    from ane_rewrite.hardware import CHIPS
    from ane_rewrite.passes._attention_cost import _times_us

    chip = CHIPS["A15"]
    on_tokens = _times_us(chip, 1, 8, 49, 49, 32, 128, False)
    as_they_lie = _times_us(chip, 1, 8, 49, 49, 32, 128, False, head_transposes=0)
    assert as_they_lie[0] < on_tokens[0] and as_they_lie[1] == on_tokens[1]
