"""Vision models for the tests: the timm models of the vision issue at small sizes, and a
hand-written MOAT-style block (an MBConv, then window attention with a relative-position bias).
Random weights; nothing downloaded."""
from __future__ import annotations

import torch
from torch import nn


class MoatBlock(nn.Module):
    """x + MBConv(x), then x + WindowAttention(LayerNorm(x)), on a (B, C, H, W) feature map.

    The attention is written the way such models usually are: channels-last, a rank-6 window
    partition, one qkv linear whose output is split with a rank-5 permute, eager
    matmul/softmax/matmul with a bias gathered from a table by a constant index, and the
    window reverse."""

    def __init__(self, c=32, heads=2, window=(4, 4), expand=4):
        super().__init__()
        self.heads, self.window, self.d = heads, window, c // heads
        self.norm1 = nn.BatchNorm2d(c)
        self.expand = nn.Conv2d(c, c * expand, 1)
        self.dw = nn.Conv2d(c * expand, c * expand, 3, padding=1, groups=c * expand)
        self.project = nn.Conv2d(c * expand, c, 1)
        self.norm2 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        wh, ww = window
        self.bias_table = nn.Parameter(torch.randn((2 * wh - 1) * (2 * ww - 1), heads) * 0.5)
        coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + torch.tensor([wh - 1, ww - 1])
        self.register_buffer("bias_index", rel[..., 0] * (2 * ww - 1) + rel[..., 1], persistent=False)

    def mbconv(self, x):
        y = nn.functional.gelu(self.expand(self.norm1(x)))
        return self.project(nn.functional.gelu(self.dw(y)))

    def attention(self, x_BHWC):
        b, hh, ww, c = x_BHWC.shape
        wh, wl = self.window
        win = x_BHWC.view(b, hh // wh, wh, ww // wl, wl, c).permute(0, 1, 3, 2, 4, 5)
        win = win.reshape(-1, wh * wl, c)                                          # (B·nW, N, C)
        n = win.shape[1]
        qkv = self.qkv(win).reshape(-1, n, 3, self.heads, self.d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = self.bias_table[self.bias_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        logits = (q * self.d ** -0.5) @ k.transpose(-2, -1) + bias
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
        out = self.proj(out).view(b, hh // wh, ww // wl, wh, wl, c).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(b, hh, ww, c)

    def forward(self, x):
        x = x + self.mbconv(x)
        x_BHWC = x.permute(0, 2, 3, 1)
        x_BHWC = x_BHWC + self.attention(self.norm2(x_BHWC))
        return x_BHWC.permute(0, 3, 1, 2)


def moat_block(batch=2, c=32, size=16):
    gen = torch.Generator().manual_seed(3)
    model = MoatBlock(c).eval()
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model, (torch.randn(batch, c, size, size, generator=gen),)


class PixelAttention(nn.Module):
    """Attention over the pixels of a (B, C, H, W) map: a 1×1 conv makes q, k, v, heads are
    blocks of its channels, the sequence is the H·W positions (MaxViT's and EfficientFormer's
    spelling: channels-last after a reshape, or the (B, heads, d, H·W) view directly)."""

    def __init__(self, c=32, heads=4, channels_last=True):
        super().__init__()
        self.heads, self.channels_last = heads, channels_last
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        d = c // self.heads
        if self.channels_last:
            qkv = self.qkv(x).permute(0, 2, 3, 1).reshape(b, h * w, self.heads, 3 * d).transpose(1, 2)
            q, k, v = qkv.split(d, dim=3)
        else:
            q, k, v = (t.transpose(-1, -2) for t in self.qkv(x).view(b, 3, self.heads, d, h * w).unbind(1))
        out = nn.functional.scaled_dot_product_attention(q, k, v)          # (B, heads, H·W, d)
        return self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
