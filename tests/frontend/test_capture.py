"""ane_rewrite/frontend/capture.py: a copy of the model as an ATen graph with recorded values,
the kept ops whole, views as reshapes; bad input named."""
import pytest
import torch
from torch import nn

from ane_rewrite.errors import CaptureError, InputError
from ane_rewrite.frontend.capture import capture, split_inputs
from ane_rewrite.rewrite.graph import op_counts


class ViewLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(x.view(2, 3, 6)).transpose(1, 2).reshape(2, 12)


def test_a_captured_copy_with_values_names_and_kept_ops():
    model, x = ViewLinear().eval(), torch.randn(6, 6)
    gm = capture(model, (x,))
    counts = op_counts(gm)
    assert counts.get("linear") == 1  # kept whole, not decomposed into addmm
    assert "view" not in counts and counts.get("reshape", 0) >= 1  # views became reshapes
    assert {k for k, _ in gm.named_parameters()} == {"fc.weight", "fc.bias"}
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(), gm.parameters()))
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "call_function") and node.users:
            assert isinstance(node.meta.get("val"), torch.Tensor), node
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))


def test_an_uncapturable_model_is_a_capture_error_naming_the_model():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # control flow on a value
    with pytest.raises(CaptureError, match="could not capture Branchy"):
        capture(Branchy(), (torch.randn(4),))


def test_example_inputs_are_a_tuple_or_a_dict():
    assert split_inputs((1, 2)) == ((1, 2), {})
    assert split_inputs({"a": 1}) == ((), {"a": 1})
    with pytest.raises(InputError, match="wrap a single tensor"):
        split_inputs(torch.ones(1))
    with pytest.raises(InputError, match="not list"):
        split_inputs([torch.ones(1)])
    with pytest.raises(InputError, match="expected a torch.nn.Module"):
        capture(lambda x: x, (torch.ones(1),))


class UnfoldFold(nn.Module):
    def forward(self, x):
        cols = nn.functional.unfold(x, 3, padding=1, stride=2)
        return nn.functional.fold(cols * 2, x.shape[-2:], 3, padding=1, stride=2)


def test_unfold_and_fold_are_kept_whole_captured_and_saved(tmp_path):
    """``im2col`` / ``col2im`` stay ops (decomposed: gathers and an accumulating ``index_put``,
    which coremltools cannot convert), in a captured model and in a saved program alike."""
    from ane_rewrite.frontend.saved_program import load_saved_program

    model, x = UnfoldFold(), torch.randn(1, 4, 9, 9)
    path = tmp_path / "unfold.pt2"
    torch.export.save(torch.export.export(model, (x,), strict=False), path)
    for gm in (capture(model, (x,)), load_saved_program(str(path))):
        counts = op_counts(gm)
        assert counts.get("im2col") == 1 and counts.get("col2im") == 1, counts
        assert "index_put" not in counts and "index" not in counts, counts
        with torch.no_grad():
            torch.testing.assert_close(gm(x), model(x))
