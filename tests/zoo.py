"""Small models for the tests (random weights, built from configs; nothing downloaded).

Each factory returns ``(model, example_inputs)``; ``example_inputs`` is None where the
adapter in ``ane_rewrite.models`` builds them.
"""
from __future__ import annotations

import torch
from torch import nn


def randomize_norms(model: nn.Module) -> nn.Module:
    """Give every LayerNorm a non-trivial affine, as a trained checkpoint has."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def distilbert(layers=2, dim=64, heads=4):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(n_layers=layers, dim=dim, hidden_dim=2 * dim, n_heads=heads, num_labels=2,
                           vocab_size=1000, max_position_embeddings=128)
    return randomize_norms(DistilBertForSequenceClassification(cfg).eval()), None


def bert():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                     vocab_size=1000, max_position_embeddings=128, num_labels=3)
    return randomize_norms(BertForSequenceClassification(cfg).eval()), None


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64,
                     bos_token_id=0, eos_token_id=0)
    return randomize_norms(GPT2LMHeadModel(cfg).eval()), None


def vit_tiny():
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False).eval(), None


def convnext_atto(conv_mlp=None):
    import timm

    kwargs = {} if conv_mlp is None else {"conv_mlp": conv_mlp}
    return timm.create_model("convnext_atto", pretrained=False, **kwargs).eval(), None


class MlpBlock(nn.Module):
    """Two pre-norm-free residual MLPs on (B, S, C)."""

    def __init__(self, c=48, hidden=96):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)
        self.fc3, self.fc4 = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x_BSC):
        x_BSC = x_BSC + self.fc2(torch.nn.functional.gelu(self.fc1(x_BSC)))
        return x_BSC + self.fc4(torch.relu(self.fc3(x_BSC)))


def mlp_block(batch=2, seq=10, c=48):
    return MlpBlock(c).eval(), (torch.randn(batch, seq, c),)


def tiny_distilbert_model():
    """For ``module:factory`` sources (the CLI test)."""
    return distilbert()[0]
