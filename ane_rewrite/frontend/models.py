"""Model-family adapters: the one place that knows Hugging Face and timm.

- ``load(source)`` resolves ``hf:<local dir | class name | model type>`` (or the local
  directory alone), ``timm:<name>``, ``<python.module>:<factory>`` and a saved ``torch.export``
  program (``<file>.pt2``) to a model (random weights unless a local directory or the program
  holds them; nothing is downloaded).
- ``example_inputs(model, seq_len, batch)`` builds inputs: token ids and an attention mask for
  Hugging Face text models, pixel values for vision models (size from the model's config),
  log-mel features for speech encoders (Whisper, Speech2Text), raw audio for wav2vec-style
  encoders, and decoder token ids for encoder-decoder models; a saved program's own example
  inputs (its shapes are fixed: another ``seq_len`` or ``batch`` is an error).
- ``prepare(model)`` readies a (copied) model for capture: Hugging Face models are captured
  with ``use_cache=False``, so a rewritten decoder returns no key/value cache.
- ``draw_inputs(example, i)``: random inputs shaped like the example (``verify``'s draws).
- ``call_options(model)``: keyword arguments that make the original model compute what the
  prepared one computes (used by ``verify``).
- Causal LMs (``ane_rewrite.generation``): ``check_causal_lm``, ``causal_lm_config`` (vocabulary,
  positions, pad id), ``use_attention`` (route every attention of a copy through a function of
  ours, by transformers' attention interface), ``causal_logits`` (logits for token ids at given
  positions, no cache of the model's own) and ``eos_token_ids``.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from ..errors import InputError, SourceError
from .diffusers_inputs import diffusers_inputs, is_diffusers
from .experts import static_experts
from .draws import draw_inputs  # noqa: F401 - the adapter's API: verify's draws
from .hf_inputs import hf_inputs, limit_of
from .saved_program import load_saved_program, saved_program_inputs

DEFAULT_SOURCE = "hf:DistilBertForSequenceClassification"
SEED = 0


def _is_hf(model) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(model, PreTrainedModel)


def _is_timm(model) -> bool:
    return hasattr(model, "pretrained_cfg") or hasattr(model, "default_cfg")


def default_model() -> torch.nn.Module:
    """DistilBERT with a 2-label (SST-2) head, from its default config, random weights."""
    return load(DEFAULT_SOURCE)


def _load_hf(name: str) -> torch.nn.Module:
    import transformers

    if os.path.isdir(name):
        config = transformers.AutoConfig.from_pretrained(name)
        arch = (config.architectures or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        return (cls or transformers.AutoModel).from_pretrained(name).eval()
    cls = getattr(transformers, name, None)
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        config = cls.config_class()
        if name.endswith("ForSequenceClassification"):
            config.num_labels = 2
        return cls(config).eval()
    try:
        config = transformers.AutoConfig.for_model(name)
    except ValueError as exc:
        raise SourceError(f"hf:{name} is neither a local model directory, a transformers model "
                          f"class, nor a model type known to AutoConfig") from exc
    return transformers.AutoModel.from_config(config).eval()


def load(source: str) -> torch.nn.Module:
    """The model a source names. Random weights are drawn from a fixed seed (the global RNG is
    left as it was), so a source gives the same model every time."""
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return _load(source)


def _load(source: str) -> torch.nn.Module:
    if os.path.isdir(source):  # a local Hugging Face model folder, named as it is
        return _load_hf(source)
    if source.endswith(".pt2"):
        if not os.path.isfile(source):
            raise SourceError(f"no saved program at {source}")
        return load_saved_program(source)
    kind, sep, name = source.partition(":")
    if not sep or not name:
        raise SourceError(f"model source {source!r} is not 'hf:NAME', 'timm:NAME', 'module:factory', "
                          "a local Hugging Face folder or a saved program (.pt2)")
    if kind == "hf":
        return _load_hf(name)
    if kind == "timm":
        import timm

        try:
            return timm.create_model(name, pretrained=False).eval()
        except RuntimeError as exc:
            raise SourceError(f"timm has no model {name!r}: {exc}") from exc
    try:
        module = importlib.import_module(kind)
    except ImportError as exc:
        raise SourceError(f"cannot import module {kind!r} for source {source!r}: {exc}") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise SourceError(f"module {kind!r} has no callable {name!r}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise SourceError(f"{source} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def example_inputs(model: torch.nn.Module, seq_len: int | None = None, batch: int | None = None) -> dict | tuple:
    """Inputs to capture ``model`` with: a dict of keyword arguments or a tuple. Hugging Face
    text models get token ids and an attention mask (``seq_len`` tokens, 128 unless given),
    vision models pixel values, speech encoders (Whisper) log-mel features of their full window;
    an encoder-decoder model also gets ``decoder_input_ids`` (``seq_len`` tokens, at most the
    decoder's positions). Diffusers models get latents, a timestep and text states
    (``diffusers_inputs.py``). A saved program (``.pt2``) gives its own, saved with it."""
    if hasattr(model, "ane_exported_inputs"):
        return saved_program_inputs(model.ane_exported_inputs, seq_len, batch)
    gen = torch.Generator().manual_seed(SEED)
    if is_diffusers(model):
        return diffusers_inputs(model, seq_len, batch or 1, gen)
    seq_len, batch = seq_len or 128, batch or 1
    if _is_hf(model):
        return hf_inputs(model, seq_len, batch, gen)
    if _is_timm(model):
        import timm.data

        channels, height, width = timm.data.resolve_model_data_config(model)["input_size"]
        built_for = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if built_for is not None:  # built with img_size=…: the pretrained config still says 224
            height, width = (built_for, built_for) if isinstance(built_for, int) else tuple(built_for)
        return (torch.randn(batch, channels, height, width, generator=gen),)
    raise InputError(f"cannot build example inputs for {type(model).__name__}: pass example_inputs= "
                     "(a tuple of positional arguments or a dict of keyword arguments)")


def prepare(model: torch.nn.Module) -> torch.nn.Module:
    """Ready a copy for capture, in place: eval mode; HF models without a key/value cache —
    every sub-model's config too (a seq2seq model's decoder holds a config of its own) — and
    with their mixture-of-experts routing in transformers' static form (``experts.static_experts``)."""
    model.eval()
    if _is_hf(model):
        for module in model.modules():
            config = getattr(module, "config", None)
            if getattr(config, "use_cache", False):
                config.use_cache = False
        static_experts(model)
    return model


def call_options(model: torch.nn.Module, example: Any) -> dict:
    """Keyword arguments for calling the *original* model like its prepared copy."""
    if _is_hf(model) and getattr(model.config, "use_cache", False) and isinstance(example, dict):
        return {"use_cache": False}
    return {}


def check_causal_lm(model: torch.nn.Module) -> None:
    """A Hugging Face decoder-only model with a language-modelling head (whether its attention
    goes through transformers' attention interface is told by the first run: ``use_attention``)."""
    if not _is_hf(model):
        raise InputError(f"optimize_causal_lm takes a Hugging Face causal LM, not {type(model).__name__}")
    if not hasattr(model, "get_output_embeddings") or model.get_output_embeddings() is None:
        raise InputError(f"{type(model).__name__} has no language-modelling head (get_output_embeddings() is None)")
    if getattr(model.config, "is_encoder_decoder", False):
        raise InputError(f"{type(model).__name__} is an encoder-decoder model, not a decoder-only causal LM")


def use_attention(model: torch.nn.Module, name: str, attend) -> None:
    """Route every attention of ``model`` (a copy: changed in place) through ``attend(query,
    key, value, scale, window, softcap)`` — q (B, Hq, T, d), k and v (B, Hkv, T, d), after the
    model's own projections, norms and rotary — which returns (B, Hq, T, d). Registered as
    transformers attention implementation ``name``; a model whose layers do not call the
    interface is reported by the caller (no attention is seen)."""
    from transformers import AttentionInterface

    def hf_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                     sliding_window=None, softcap=None, **kwargs):
        unknown = sorted(k for k, v in kwargs.items() if v is not None and k in _UNSUPPORTED_ATTENTION)
        if unknown:
            raise InputError(f"{type(module).__name__} passes {', '.join(unknown)} to its attention: "
                             "not supported by the KV-cache attention")
        out = attend(query, key, value, scaling, sliding_window, softcap)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(name, hf_attention)
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = name


_UNSUPPORTED_ATTENTION = ("s_aux", "sinks", "position_bias", "head_mask")


def causal_lm_config(model: torch.nn.Module) -> tuple[int, int | None, int]:
    """(vocabulary size, positions the model holds or None when unbounded, the pad token id — 0
    when it has none)."""
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    pad = getattr(text, "pad_token_id", None)
    return text.vocab_size, limit_of(text, "n_positions", "max_position_embeddings"), 0 if pad is None else pad


def causal_logits(model: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """The model's logits (B, T, V) for ``input_ids`` at ``position_ids``, without a cache of its own."""
    return model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits


def eos_token_ids(model: torch.nn.Module) -> set[int]:
    """The token ids at which Hugging Face's ``generate`` stops (its generation config's, else the config's)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}
