"""Graphs of published measurements that today's libraries no longer build, rebuilt as modules
(``module:published_rebuilds:NAME`` in ``published/latency.csv``).

DistilBERT as Hugging Face transformers traced it in 2022, when Apple measured it (9.89 ms on
iPhone 13 Pro Max, 266 ops of which 38 on the CPU): eager attention whose padding mask is made
per layer from the integer ``attention_mask`` — ``(mask == 0)`` reshaped, expanded to the
scores and applied with ``masked_fill`` — where today's transformers adds one float mask built
once. The submodules (embeddings, projections, norms, feed-forward, head) are today's, with
today's parameter names; only the attention's forward is the 2022 one.

    scores_BHQK = q·kᵀ / √d;  scores.masked_fill((mask_BK == 0) → (B, 1, 1, K) → (B, H, Q, K), min)
"""
from __future__ import annotations

import math

import torch


class DistilBert2022(torch.nn.Module):
    """DistilBertForSequenceClassification (default config, 2 labels) with 2022's attention."""

    def __init__(self):
        super().__init__()
        import transformers

        config = transformers.DistilBertConfig(num_labels=2)
        self.model = transformers.DistilBertForSequenceClassification(config).eval()

    def _attention(self, attn, x_BSC, mask_BS):
        b, s, c = x_BSC.shape
        h = attn.n_heads
        d = c // h

        def heads(t):  # (B, S, C) → (B, H, S, d)
            return t.view(b, -1, h, d).transpose(1, 2)

        q, k, v = heads(attn.q_lin(x_BSC)) / math.sqrt(d), heads(attn.k_lin(x_BSC)), heads(attn.v_lin(x_BSC))
        scores = torch.matmul(q, k.transpose(2, 3))
        masked = (mask_BS == 0).view(b, 1, 1, s).expand_as(scores)
        scores = scores.masked_fill(masked, torch.finfo(scores.dtype).min)
        context = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).contiguous().view(b, -1, c)
        return attn.out_lin(context)

    def forward(self, input_ids, attention_mask):
        bert = self.model.distilbert
        x = bert.embeddings(input_ids)
        for layer in bert.transformer.layer:
            x = layer.sa_layer_norm(self._attention(layer.attention, x, attention_mask) + x)
            x = layer.output_layer_norm(layer.ffn(x) + x)
        pooled = torch.relu(self.model.pre_classifier(x[:, 0]))
        return self.model.classifier(pooled)


def distilbert_2022(batch: int, seq: int):
    """(model, example inputs) of the 2022 graph at (batch, seq)."""
    model = DistilBert2022().eval()
    ids = torch.randint(0, model.model.config.vocab_size, (batch, seq))
    return model, (ids, torch.ones(batch, seq, dtype=torch.long))
