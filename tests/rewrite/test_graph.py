"""ane_rewrite/rewrite/graph.py: op tests, arguments with defaults, recorded and inferred values."""
import torch

from ane_rewrite.rewrite.graph import (aten, arg, infer_val, is_op, normalize_dims, op_counts, rank, readers,
                                       shape, val)
from tests.helpers import captured


class Softmax(torch.nn.Module):
    def forward(self, x):
        return torch.softmax(x * 2, dim=-1)


def _graph():
    return captured(Softmax().eval(), (torch.randn(2, 3, 4),))


def test_op_tests_accept_overloads_and_packets():
    gm = _graph()
    mul = next(n for n in gm.graph.nodes if is_op(n, aten.mul))
    assert is_op(mul, aten.mul.Tensor) and not is_op(mul, aten.add) and not is_op(3, aten.mul)
    assert op_counts(gm)["mul"] == 1


def test_values_shapes_and_arguments():
    gm = _graph()
    soft = next(n for n in gm.graph.nodes if is_op(n, aten.softmax, aten._softmax))
    assert shape(soft) == (2, 3, 4) and rank(soft) == 3 and val(5) == 5
    assert arg(soft, 1, "dim") in (-1, 2) and arg(soft, 9, "missing", "default") == "default"
    assert normalize_dims([-1, 0], 3) == [0, 2]
    assert readers(soft.args[0]) == [soft]


def test_inferred_values_run_the_op_on_fake_tensors():
    gm = _graph()
    x = next(n for n in gm.graph.nodes if n.op == "placeholder")
    v = infer_val(gm, aten.permute.default, (x, [2, 0, 1]), {})
    assert tuple(v.shape) == (4, 2, 3) and type(v).__name__ == "FakeTensor"
