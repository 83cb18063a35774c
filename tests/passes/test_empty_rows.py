"""Queries with no key left (left padding under a causal mask, a mask row of zeros): the
rewrite computes what torch computes — uniform over the keys at the row's highest mask value
for dtype-min masks, attention by the logits for −1e4 masks — in fp32, and stays finite in the
fp16 export (issue 15)."""
import numpy as np
import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.rewrite.graph import op_counts

LOW = torch.finfo(torch.float32).min
MASKS = {"left-padded": torch.tensor([[0] * 5 + [1] * 7, [1] * 12, [0] * 11 + [1]]),
         "a row of zeros": torch.tensor([[0] * 12, [1] * 12, [1] * 6 + [0] * 6])}


class CausalPaddedAttention(nn.Module):
    """Eager attention masked causally and by a (B, S) padding input, in the spellings models use:
    "sum": dtype-min + dtype-min (−inf where both mask); "fill": masked_fill of the causal part,
    then the padding added; "where": dtype-min wherever either masks; "e4": −1e4 wherever."""

    def __init__(self, kind: str, c: int = 32, heads: int = 4):
        super().__init__()
        self.qkv, self.o, self.heads, self.kind = nn.Linear(c, 3 * c), nn.Linear(c, c), heads, kind

    def forward(self, x, mask):
        b, s, c = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        causal, pad = torch.ones(s, s, dtype=torch.bool).triu(1), (mask == 0)[:, None, None, :]
        logits = q @ k.transpose(-1, -2) / (c // self.heads) ** 0.5
        if self.kind == "sum":
            logits = logits + causal * LOW + pad * LOW
        elif self.kind == "fill":
            logits = logits.masked_fill(causal, LOW) + pad * LOW
        else:
            logits = logits + torch.where(causal | pad, LOW if self.kind == "where" else -1e4, 0.0)
        return self.o((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, s, c))


def _example():
    return torch.randn(3, 12, 32), torch.ones(3, 12, dtype=torch.long)


@pytest.mark.parametrize("kind", ["sum", "fill", "where", "e4"])
def test_emptied_rows_of_a_hand_written_attention_are_torchs(kind):
    model, example = CausalPaddedAttention(kind).eval(), _example()
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True, safe=False)
    assert op_counts(fast).get("einsum", 0) == 2 * 4  # lowered per head, not left as it was
    for name, mask in MASKS.items():
        report = ane_rewrite.verify(model, fast, (example[0], mask), draws=1)
        assert report.ok, f"{name}: {report}"


def _hf(name):
    import transformers

    if name == "t5":
        return transformers.T5EncoderModel(transformers.T5Config(
            d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2, vocab_size=64))
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=64)
    config._attn_implementation = "eager"
    return transformers.LlamaModel(config)


@pytest.mark.parametrize("name", ["t5", "llama-eager"])
def test_emptied_rows_of_hugging_face_models_are_torchs(name):
    model = _hf(name).eval()
    example = {"input_ids": torch.randint(0, 64, (3, 12)), "attention_mask": torch.ones(3, 12, dtype=torch.long)}
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True, safe=False)
    assert op_counts(fast).get("einsum", 0) == 2 * 2 * 4
    for label, mask in MASKS.items():
        report = ane_rewrite.verify(model, fast, {**example, "attention_mask": mask}, draws=1)
        assert report.ok, f"{label}: {report}"


def test_the_fp16_export_stays_finite_on_emptied_rows(tmp_path):
    model, example = CausalPaddedAttention("sum").eval(), _example()
    fast = ane_rewrite.optimize(model, example, lower_every_attention=True)
    path = ane_rewrite.export(fast, example, tmp_path / "fast.mlpackage", progress=False)
    x, mask = example[0], MASKS["left-padded"]
    (out,) = ane_rewrite.execute(path, {"x": x.numpy(), "mask": mask.numpy().astype(np.int32)}, "fp16").values()
    assert np.isfinite(out).all()
    with torch.no_grad():
        ref = model(x, mask).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-2
