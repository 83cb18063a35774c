"""ane_rewrite.optimize: works on a copy, keeps names, rejects bad input with its cause."""
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.errors import CaptureError, InputError
from tests.zoo import distilbert, mlp_block


def test_user_model_is_untouched_and_example_inputs_are_exposed():
    model, example = mlp_block()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m) for m in model.modules()]
    fast = ane_rewrite.optimize(model, example)
    assert [type(m) for m in model.modules()] == kinds
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fast.example_inputs is example
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(), fast.parameters()))


def test_load_state_dict_of_the_original_works_and_gives_its_outputs():
    model, _ = distilbert()
    fast = ane_rewrite.optimize(model, seq_len=12)
    other, _ = distilbert()  # same architecture, other weights
    fast.load_state_dict(other.state_dict())
    ex = fast.example_inputs
    with torch.no_grad():
        torch.testing.assert_close(fast(**ex).logits, other(**ex).logits, rtol=1e-4, atol=1e-5)
        fast.load_state_dict(model.state_dict())
        torch.testing.assert_close(fast(**ex).logits, model(**ex).logits, rtol=1e-4, atol=1e-5)


def test_report_lists_passes_and_declines():
    model, _ = distilbert()
    fast = ane_rewrite.optimize(model, seq_len=8)
    names = [r.name for r in fast.ane_report.results]
    assert names == ["windows", "rms_norm", "layout", "joint_heads", "rotary", "attention", "batched_heads", "softmax",
                     "layer_norm", "group_norm", "cleanup", "window_groups"]
    assert fast.ane_report.counts()["layout"]["linear_to_conv"] == 2 * 6 + 2
    declined = [d for r in fast.ane_report.results for d in r.declined]
    assert declined and all(d.reason for d in declined)


def test_a_single_tensor_is_not_taken_for_inputs():
    model, (x,) = mlp_block()
    with pytest.raises(InputError, match=r"wrap a single tensor as \(tensor,\)"):
        ane_rewrite.optimize(model, x)


def test_wrong_inputs_name_the_capture_failure():
    model, _ = mlp_block()
    with pytest.raises(CaptureError, match="could not capture MlpBlock"):
        ane_rewrite.optimize(model, (torch.randn(2, 10, 7),))


def test_data_dependent_control_flow_is_a_capture_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(CaptureError):
        ane_rewrite.optimize(Branchy(), (torch.randn(3),))


def test_not_a_module():
    with pytest.raises(InputError, match="nn.Module"):
        ane_rewrite.optimize(lambda x: x, (torch.randn(3),))


def test_unknown_options_are_refused_by_name():
    model, example = mlp_block()
    with pytest.raises(InputError, match="unknown option.*chunk_bites"):
        ane_rewrite.optimize(model, example, chunk_bites=3)


@pytest.mark.parametrize("option", [{"max_queries_per_chunk": 0}, {"max_chunk_bytes": 1.5},
                                    {"lower_every_attention": "yes"}])
def test_bad_option_values_are_refused_by_name(option):
    model, example = mlp_block()
    (name,) = option
    with pytest.raises(InputError, match=f"bad option: {name}"):
        ane_rewrite.optimize(model, example, **option)


def test_a_decline_has_a_kind_and_an_unknown_kind_is_an_error():
    from ane_rewrite.rewrite.rules import COST, STRUCTURE, MatchResult

    assert MatchResult.fail("not the pattern").kind == STRUCTURE
    assert MatchResult.fail("would not pay", COST).kind == COST
    with pytest.raises(ValueError, match="kind"):
        MatchResult.fail("why", "expensive")
