"""passes/_layouts.py: the channels-last ↔ channels-first conversions, emitted and recognised.

    x_BSC ─ permute(0, 2, 1) ─ unsqueeze(2)  = to₃(x)        y ─ squeeze(2) ─ permute(0, 2, 1) = from₃(y)
"""
import pytest
import torch

from ane_rewrite.passes._layouts import AXIS_MAP, emit_from, emit_to, from_operand, match_from, match_to
from ane_rewrite.rewrite.graph import shape
from ane_rewrite.rewrite.rules import Rewriter
from tests.helpers import captured

SHAPES = {2: (2, 5), 3: (2, 7, 5), 4: (2, 3, 4, 5)}


@pytest.mark.parametrize("r", [2, 3, 4])
def test_emitted_conversions_are_recognised_and_map_every_axis(r):
    gm = captured(torch.nn.ReLU().eval(), (torch.randn(*SHAPES[r]),))
    relu = next(n for n in gm.graph.nodes if n.op == "call_function" and "relu" in str(n.target))
    x = relu.args[0]
    rw = Rewriter(gm, relu, "test")
    y = emit_to(rw, x)
    assert match_to(y) == (x, r) and len(shape(y)) == 4
    for axis, size in enumerate(shape(x)):
        assert shape(y)[AXIS_MAP[r][axis]] == size
    back = emit_from(rw, y, r)
    assert match_from(back) == (y, r) and shape(back) == shape(x)
    assert y.meta["ane_channels_first_of"] == (relu.name, r)
    relu.replace_input_with(x, back)
    assert from_operand(relu) == (y, r)
    gm.graph.lint()
    gm.recompile()
    example = torch.randn(*SHAPES[r])
    torch.testing.assert_close(gm(example), torch.relu(example))


def test_a_model_written_permute_is_a_conversion_too():
    class ChannelsLast(torch.nn.Module):  # ConvNeXt's own permute(0, 2, 3, 1) is a ``from``
        def forward(self, x_BCHW):
            return x_BCHW.permute(0, 2, 3, 1)

    gm = captured(ChannelsLast().eval(), (torch.randn(1, 3, 4, 5),))
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0][0]
    assert match_from(out) == (out.args[0], 4) and match_to(out) is None
