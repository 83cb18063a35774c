"""Whole architectures built from a spec: the model a generated spec describes (issue 15).

A text model: token embedding (and learned positions), ``depth`` blocks, a final norm, a head.
A block: attention (sdpa or eager spelling; heads and kv heads; rotary in two layouts, ALiBi,
a learned relative bias, or no position term; padding, causal, sliding-window or no mask) and
an MLP (an activation, optionally gated), each with a residual, normed before, after or not at
all, in sequence or in parallel; blocks may share one set of weights. A vision model: a conv
stem (patchify, optionally preceded by a 3×3 conv), then blocks as above over the patches, in
windows of the patch grid or over all of it, without masks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEG = torch.finfo(torch.float32).min


@dataclass(frozen=True)
class Spec:
    kind: str = "text"            # "text" | "vision"
    depth: int = 1
    width: int = 32
    heads: int = 4
    kv_heads: int = 4
    norm: str = "layer"           # "layer" | "rms" | "none"
    norm_place: str = "pre"       # "pre" | "post"
    act: str = "gelu"             # "gelu" | "gelu_tanh" | "relu" | "silu"
    gated: bool = False
    mlp_ratio: int = 2
    positions: str = "none"       # "learned" | "rope_half" | "rope_pairs" | "alibi" | "relative" | "none"
    mask: str = "none"            # "padding" | "causal" | "causal_padding" | "sliding" | "none"
    spelling: str = "sdpa"        # "sdpa" | "eager"
    parallel: bool = False        # attention and MLP read the same input (GPT-J)
    shared: bool = False          # every block is the same module
    seq: int = 16                 # text: tokens; vision: patches per side
    batch: int = 1
    window: int = 0               # vision: window side in patches (0: global attention)
    stem: str = "patch"           # vision: "patch" | "conv_patch"
    vocab: int = 97


class RMSNorm(nn.Module):
    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(1 + 0.1 * torch.randn(c)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _norm(spec: Spec) -> nn.Module:
    if spec.norm == "layer":
        norm = nn.LayerNorm(spec.width)
        with torch.no_grad():
            norm.weight.normal_(1, 0.1), norm.bias.normal_(0, 0.1)
        return norm
    return RMSNorm(spec.width) if spec.norm == "rms" else nn.Identity()


def _rotate(x: torch.Tensor, positions: torch.Tensor, layout: str) -> torch.Tensor:
    """Rotary embedding of (B, H, S, d): halves ("rope_half", Llama) or adjacent pairs ("rope_pairs", GPT-J)."""
    d = x.shape[-1]
    freqs = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angles = positions[:, None].float() * freqs[None]                     # (S, d/2)
    if layout == "rope_half":
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin
    cos, sin = angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1)
    pairs = x.reshape(*x.shape[:-1], d // 2, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(x.shape)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, spec: Spec, tokens: int):
        super().__init__()
        self.spec, self.d = spec, spec.width // spec.heads
        self.q = nn.Linear(spec.width, spec.heads * self.d)
        self.k = nn.Linear(spec.width, spec.kv_heads * self.d)
        self.v = nn.Linear(spec.width, spec.kv_heads * self.d)
        self.o = nn.Linear(spec.heads * self.d, spec.width)
        if spec.positions == "relative":
            self.bias = nn.Parameter(0.5 * torch.randn(spec.heads, tokens, tokens))
        if spec.positions == "alibi":
            self.register_buffer("slopes", 2.0 ** (-8.0 * torch.arange(1, spec.heads + 1) / spec.heads))

    def forward(self, x, mask):
        spec, (b, s, _) = self.spec, x.shape
        q = self.q(x).reshape(b, s, spec.heads, self.d).transpose(1, 2)
        k = self.k(x).reshape(b, s, spec.kv_heads, self.d).transpose(1, 2)
        v = self.v(x).reshape(b, s, spec.kv_heads, self.d).transpose(1, 2)
        if spec.positions.startswith("rope"):
            q, k = _rotate(q, torch.arange(s), spec.positions), _rotate(k, torch.arange(s), spec.positions)
        if spec.kv_heads != spec.heads:
            n = spec.heads // spec.kv_heads
            k, v = k.repeat_interleave(n, 1), v.repeat_interleave(n, 1)
        bias = mask
        if spec.positions == "relative":
            bias = self.bias[None] if bias is None else bias + self.bias[None]
        elif spec.positions == "alibi":
            distance = (torch.arange(s)[None, :] - torch.arange(s)[:, None]).float()
            alibi = (self.slopes[:, None, None] * distance)[None]
            bias = alibi if bias is None else bias + alibi
        if spec.spelling == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.d)
            out = (logits if bias is None else logits + bias).softmax(-1) @ v
        return self.o(out.transpose(1, 2).reshape(b, s, spec.heads * self.d))


class Mlp(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        hidden = spec.mlp_ratio * spec.width
        self.up, self.down = nn.Linear(spec.width, hidden), nn.Linear(hidden, spec.width)
        self.gate = nn.Linear(spec.width, hidden) if spec.gated else None
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU("tanh"), "relu": nn.ReLU(), "silu": nn.SiLU()}[spec.act]

    def forward(self, x):
        h = self.act(self.up(x))
        return self.down(h * self.gate(x) if self.gate is not None else h)


class Block(nn.Module):
    def __init__(self, spec: Spec, tokens: int):
        super().__init__()
        self.spec = spec
        self.attn, self.mlp = Attention(spec, tokens), Mlp(spec)
        self.norm1, self.norm2 = _norm(spec), _norm(spec)

    def forward(self, x, mask):
        if self.spec.parallel:
            h = self.norm1(x) if self.spec.norm_place == "pre" else x
            out = x + self.attn(h, mask) + self.mlp(h)
            return out if self.spec.norm_place == "pre" else self.norm1(out)
        if self.spec.norm_place == "pre":
            x = x + self.attn(self.norm1(x), mask)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, mask))
        return self.norm2(x + self.mlp(x))


def _blocks(spec: Spec, tokens: int) -> nn.ModuleList:
    if spec.shared:
        block = Block(spec, tokens)
        return nn.ModuleList([block] * spec.depth)
    return nn.ModuleList([Block(spec, tokens) for _ in range(spec.depth)])


class TextModel(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab, spec.width)
        self.pos = nn.Parameter(0.1 * torch.randn(spec.seq, spec.width)) if spec.positions == "learned" else None
        self.blocks, self.norm = _blocks(spec, spec.seq), _norm(spec)
        self.head = nn.Linear(spec.width, 5)

    def _mask(self, attention_mask, s):
        spec, mask = self.spec, None
        if spec.mask in ("causal", "causal_padding", "sliding"):
            i, j = torch.arange(s)[:, None], torch.arange(s)[None, :]
            allowed = (j <= i) & ((i - j < 4) if spec.mask == "sliding" else True)
            mask = torch.where(allowed, 0.0, NEG)[None, None]
        if spec.mask in ("padding", "causal_padding"):
            pad = torch.where(attention_mask[:, None, None, :] != 0, 0.0, NEG)
            mask = pad if mask is None else mask + pad  # −inf where both mask
        return mask

    def forward(self, input_ids, attention_mask=None):
        x = self.embed(input_ids)
        if self.pos is not None:
            x = x + self.pos
        mask = self._mask(attention_mask, input_ids.shape[1])
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


class VisionModel(nn.Module):
    def __init__(self, spec: Spec, patch: int = 2):
        super().__init__()
        self.spec, self.patch = spec, patch
        stem = [nn.Conv2d(3, spec.width, patch, stride=patch)]
        if spec.stem == "conv_patch":
            stem = [nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, spec.width, patch, stride=patch)]
        self.stem = nn.Sequential(*stem)
        side = spec.window or spec.seq
        self.blocks, self.norm = _blocks(spec, side * side), _norm(spec)
        self.head = nn.Linear(spec.width, 5)

    def forward(self, pixels):
        x = self.stem(pixels)                                    # (B, C, H, W)
        b, c, h, w = x.shape
        win = self.spec.window or h
        # windows of win × win patches: (B·nH·nW, win², C)
        x = x.reshape(b, c, h // win, win, w // win, win).permute(0, 2, 4, 3, 5, 1).reshape(-1, win * win, c)
        for block in self.blocks:
            x = block(x, None)
        x = self.norm(x).mean(1).reshape(b, -1, c).mean(1)
        return self.head(x)


def build(spec: Spec) -> tuple[nn.Module, tuple | dict]:
    """The model and its example inputs (random weights from the current RNG state)."""
    if spec.kind == "vision":
        model = VisionModel(spec).eval()
        return model, (torch.randn(spec.batch, 3, 2 * spec.seq, 2 * spec.seq),)
    model = TextModel(spec).eval()
    inputs = {"input_ids": torch.randint(0, spec.vocab, (spec.batch, spec.seq))}
    if spec.mask in ("padding", "causal_padding"):
        inputs["attention_mask"] = torch.ones(spec.batch, spec.seq, dtype=torch.long)
    return model, inputs
