"""Small models for the tests (random weights, built from configs; nothing downloaded).

Each factory returns ``(model, example_inputs)``; ``example_inputs`` is None where the
adapter in ``ane_rewrite.frontend.models`` builds them.
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


class SelfAttention(nn.Module):
    """A hand-written attention block in one of several spellings.

    form: "sdpa" (F.scaled_dot_product_attention), "eager" (matmul/softmax/matmul, scale on the
    logits), "eager_q_scaled" (scale on q), "repeat_kv" (grouped-query heads expanded by hand),
    "gqa" (sdpa with enable_gqa)."""

    def __init__(self, c=32, heads=4, kv_heads=None, causal=False, form="sdpa", scale=None):
        super().__init__()
        self.heads, self.kv_heads = heads, kv_heads or heads
        self.d = c // heads
        self.causal, self.form, self.scale = causal, form, scale
        self.q = nn.Linear(c, c)
        self.k = nn.Linear(c, self.kv_heads * self.d)
        self.v = nn.Linear(c, self.kv_heads * self.d)
        self.o = nn.Linear(c, c)

    def forward(self, x, mask=None):
        b, s, c = x.shape
        q = self.q(x).view(b, s, self.heads, self.d).transpose(1, 2)
        k = self.k(x).view(b, s, self.kv_heads, self.d).transpose(1, 2)
        v = self.v(x).view(b, s, self.kv_heads, self.d).transpose(1, 2)
        scale = self.scale or self.d ** -0.5
        if self.form == "repeat_kv":
            n = self.heads // self.kv_heads
            k = k[:, :, None].expand(b, self.kv_heads, n, s, self.d).reshape(b, self.heads, s, self.d)
            v = v[:, :, None].expand(b, self.kv_heads, n, s, self.d).reshape(b, self.heads, s, self.d)
        if self.form in ("sdpa", "repeat_kv", "gqa"):
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=self.causal, scale=self.scale,
                enable_gqa=self.form == "gqa")
        else:
            if self.form == "eager_q_scaled":
                logits = (q * scale) @ k.transpose(-1, -2)
            elif self.form == "eager_mask_then_scale":
                logits = (q @ k.transpose(-1, -2) + mask) * scale
                mask = None
            else:
                logits = (q @ k.transpose(-1, -2)) * scale
            if mask is not None:
                logits = logits + mask
            if self.causal:
                logits = logits.masked_fill(~torch.ones(s, s, dtype=torch.bool).tril(), float("-inf"))
            out = logits.softmax(-1) @ v
        return self.o(out.transpose(1, 2).reshape(b, s, c))


class MhaBlock(nn.Module):
    """nn.MultiheadAttention, batch first, called as most models call it."""

    def __init__(self, c=32, heads=4, need_weights=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x):
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


def clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         vocab_size=1000, max_position_embeddings=64)
    return randomize_norms(CLIPTextModel(cfg).eval()), None


def padded(model, seq=12, batch=2, pad=4):
    """Adapter inputs with real padding: the first sequence ends in ``pad`` padding tokens."""
    from ane_rewrite.frontend import models

    ex = models.example_inputs(model, seq_len=seq, batch=batch)
    ex["attention_mask"][0, seq - pad:] = 0
    return ex
