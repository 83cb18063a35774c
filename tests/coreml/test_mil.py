"""ane_rewrite/coreml/mil.py: reading ops from an exported program, and the glue between convs."""
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.coreml import mil


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.b(y.transpose(2, 3)) + y.transpose(2, 3)


def test_program_ops_and_summary(tmp_path):
    path = tmp_path / "m.mlpackage"
    ane_rewrite.export(TwoConvs().eval(), (torch.randn(1, 8, 2, 3),), path)
    ops = mil.program_ops(path)  # read back from disk
    s = mil.summary(ops)
    assert s["conv"] == s["conv_4d"] == 2 and s["linear"] == 0
    assert s["transpose"] == 1 and s["max_rank"] == 4
    assert s["ops"] == sum(mil.op_mix(ops).values())
    glue = mil.ops_between(ops)
    first, second = glue.values()
    assert sorted(o.type for o in first) == ["relu", "transpose"]  # a → b passes relu and transpose
    assert second == []
