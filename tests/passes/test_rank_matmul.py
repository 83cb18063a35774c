"""passes/_rank_matmul.py: a matmul of rank ≥ 5 runs on rank-≤4 views merging the batch axes its
operands hold alike (VOLO's outlook attention: (B, H, N, k², k²) @ (B, H, N, k², d)); operands that
broadcast in more runs than a rank-4 view holds are declined with the reason."""
import pytest
import torch
from torch import nn

from ane_rewrite.passes._rank_matmul import low_rank_matmul
from ane_rewrite.passes.windows import windows
from ane_rewrite.rewrite.graph import aten, is_op, rank
from tests.helpers import captured, outputs


class Outlook(nn.Module):
    """VOLO's outlook attention between its unfold and its fold: a k² × k² map per position and head."""

    def __init__(self, c: int, heads: int, k: int):
        super().__init__()
        self.heads, self.k = heads, k
        self.attn = nn.Linear(c, heads * k ** 4)

    def forward(self, x, v):  # x (B, N, C), v (B, C·k², N): unfold's columns
        b, n, c = x.shape
        k2 = self.k * self.k
        v = v.reshape(b, self.heads, c // self.heads, k2, n).permute(0, 1, 4, 3, 2)  # B, H, N, k², d
        a = self.attn(x).reshape(b, n, self.heads, k2, k2).permute(0, 2, 1, 3, 4).softmax(dim=-1)
        return (a @ v).permute(0, 1, 4, 3, 2).reshape(b, c * k2, n)


def _max_rank(gm) -> int:
    return max((rank(n) or 0) for n in gm.graph.nodes)


@pytest.mark.parametrize("b,heads,d,k,n", [(1, 6, 4, 3, 10), (2, 2, 3, 2, 7)])
def test_outlook_products_run_at_rank_4(b, heads, d, k, n):
    module = Outlook(heads * d, heads, k).eval()
    example = (torch.randn(b, n, heads * d), torch.randn(b, heads * d * k * k, n))
    gm = captured(module, example)
    assert _max_rank(gm) == 5
    result = windows(gm)
    assert result.counts["low_rank_matmul"] == 1, result
    assert _max_rank(gm) <= 4
    torch.testing.assert_close(outputs(gm, example), module(*example), rtol=1e-5, atol=1e-5)
    assert not windows(gm).changed


class Product(nn.Module):
    def forward(self, x, y):
        return x @ y


def test_batch_axes_broadcast_alike_are_merged():
    # batch (3, 1, 2, 4): x whole, y broadcast over (3, 1) and whole on (2, 4): two runs, rank 4
    example = (torch.randn(3, 1, 2, 4, 5, 6), torch.randn(2, 4, 6, 7))
    gm = captured(Product(), example)
    assert windows(gm).counts["low_rank_matmul"] == 1
    assert [rank(n) for n in gm.graph.nodes if is_op(n, aten.matmul)] == [4]  # the output stays rank 6
    torch.testing.assert_close(outputs(gm, example), Product()(*example))


def test_batch_axes_broadcast_apart_are_declined_with_the_reason():
    # batch (2, 3, 4): x whole, y broadcast on axis 1 only: three runs, no rank-4 view
    example = (torch.randn(2, 3, 4, 5, 6), torch.randn(2, 1, 4, 6, 7))
    gm = captured(Product(), example)
    node = next(n for n in gm.graph.nodes if is_op(n, aten.matmul))
    declined = low_rank_matmul.match(node)
    assert declined.declined and "3 runs of batch axes" in declined.reason, declined
    torch.testing.assert_close(outputs(gm, example), Product()(*example))


def test_volo_converts_after_optimize():
    """VOLO's outlook attention (unfold, (B, H, N, 9, 9) @ (B, H, N, 9, d), overlapping fold at stride 2),
    which coremltools cannot convert as it is (col2im of overlapping windows), at rank ≤ 4 and no gather."""
    from timm.models.volo import VOLO

    import ane_rewrite
    from ane_rewrite.coreml import mil

    torch.manual_seed(0)
    model = VOLO(layers=(1, 1, 1, 1), img_size=64, stem_hidden_dim=16, embed_dims=(32, 64, 64, 64),
                 num_heads=(2, 4, 4, 4)).eval()
    fast = ane_rewrite.optimize(model, (torch.randn(1, 3, 64, 64),))
    counts = fast.ane_report.counts()["windows"]
    assert counts["unfold_as_conv"] == counts["fold_as_conv"] == counts["low_rank_matmul"] == 1, counts
    assert _max_rank(fast) <= 4
    report = ane_rewrite.verify(model, fast, fast.example_inputs, draws=1)
    assert report.ok and report.psnr >= 60, report
    ml = ane_rewrite.export(fast, fast.example_inputs)
    s = mil.summary(mil.program_ops(ml))
    assert s["max_rank"] <= 4 and s["rank5"] == 0 and s["gather"] == 0, s
    executed = ane_rewrite.verify(model, ml, fast.example_inputs, draws=1, source=fast)
    assert executed.ok and executed.psnr >= 60, executed
