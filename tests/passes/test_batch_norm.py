"""passes/_batch_norm.py: a BatchNorm1d over flattened tokens (Linear + BN, as in LeViT) is its
eval-mode affine on the tokens, so the layout spreads through it and the head split after it
reads a channels-first projection."""
import torch
from torch import nn

from ane_rewrite import passes
from tests.helpers import captured, count, outputs


class LinearNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(16, 24), nn.BatchNorm1d(24), nn.Linear(24, 8)
        with torch.no_grad():  # running statistics of a trained model
            self.bn.running_mean.normal_()
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.normal_()

    def forward(self, x):
        y = self.fc(x)
        y = self.bn(y.flatten(0, 1)).reshape_as(y)
        return self.out(torch.relu(y))


def test_a_token_batch_norm_becomes_an_affine_in_the_channels_first_layout():
    module, example = LinearNorm().eval(), (torch.randn(2, 7, 16),)
    gm = captured(module, example)
    result = passes.default_pipeline()(gm)
    assert result.counts()["layout"]["token_batch_norm"] == 1
    assert count(gm, "_native_batch_norm_legit_no_training") == 0 and count(gm, "linear") == 0
    convs = [n for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert len(convs) == 2 and all(len(n.meta["val"].shape) == 4 for n in convs)
    moved = [n for n in gm.graph.nodes if n.target == torch.ops.aten.permute.default and n.meta["val"].shape[0] == 2]
    assert len(moved) == 2  # of the tokens: one conversion in, one out, none around the norm
    with torch.no_grad():
        torch.testing.assert_close(outputs(gm, example), module(*example))
    gm.load_state_dict(module.state_dict())  # the BN's tensors are still its parameters and buffers


def test_a_batch_norm_over_an_image_is_left_to_coremltools():
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).eval()
    gm = captured(module, (torch.randn(1, 3, 8, 8),))
    assert passes.default_pipeline()(gm).counts()["layout"].get("token_batch_norm", 0) == 0
