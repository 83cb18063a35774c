"""Small models whose attention is more than a plain dot product (issue 13): position biases,
softcapping, disentangled terms, cross-attention, weights shared across layers. Random
weights, 2 layers, hidden 128, 4 heads; inputs from the adapter (``models.example_inputs``)."""
import torch
import transformers

LAYERS, HEADS, SEQ = 2, 4, 32
TEXT = dict(num_hidden_layers=LAYERS, hidden_size=128, num_attention_heads=HEADS, intermediate_size=256,
            vocab_size=1000, max_position_embeddings=128)
SEQ2SEQ = dict(d_model=128, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=HEADS,
               decoder_attention_heads=HEADS, encoder_ffn_dim=256, decoder_ffn_dim=256, vocab_size=1000,
               pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
T5 = dict(d_model=128, d_kv=32, d_ff=256, num_layers=LAYERS, num_heads=HEADS, vocab_size=1000)

# name: (transformers class, config, attention implementation, attentions (self + cross));
# a timm model: ("timm", create_model kwargs, None, attentions)
FAMILIES = {
    "bloom-alibi": ("BloomModel", dict(n_layer=LAYERS, hidden_size=128, n_head=HEADS, vocab_size=1000), "eager", LAYERS),
    "mpt-alibi-masked-fill": ("MptModel", dict(n_layers=LAYERS, d_model=128, n_heads=HEADS, vocab_size=1000,
                                               max_seq_len=128), "eager", LAYERS),
    "gemma2-softcap": ("Gemma2Model", dict(TEXT, num_key_value_heads=2, head_dim=32, sliding_window=8,
                                           attn_logit_softcapping=50.0), "eager", LAYERS),
    "deberta-v2-disentangled": ("DebertaV2Model", dict(TEXT, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                       position_buckets=16), "eager", LAYERS),
    # DeBERTa (v1): fused q/k/v projection without bias, the query and value biases added to
    # the split heads, the query scaled before its products, 4-D relative gathers
    "deberta-v1-disentangled": ("DebertaModel", dict(TEXT, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                     max_relative_positions=16), "eager", LAYERS),
    "albert-shared": ("AlbertModel", dict(TEXT, embedding_size=64), "sdpa", LAYERS),
    "t5-encoder": ("T5EncoderModel", T5, "eager", LAYERS),
    "t5-seq2seq": ("T5Model", T5, "eager", 3 * LAYERS),
    "bart-seq2seq": ("BartModel", dict(SEQ2SEQ, max_position_embeddings=128), "sdpa", 3 * LAYERS),
    "whisper-seq2seq": ("WhisperModel", dict(SEQ2SEQ, num_mel_bins=80, max_source_positions=32,
                                             max_target_positions=64), "sdpa", 3 * LAYERS),
    # learned bias tables indexed by static offsets, attention-subsample blocks (queries from a
    # strided grid), Linear + BatchNorm1d projections; 11 attentions, 4 to 16 heads each
    "levit-bias-table": ("timm", dict(model_name="levit_128s", img_size=112), None, 11),
    # post-norm, scaled cosine attention (L2-normalised q and k, a learned per-head logit scale),
    # a continuous position bias computed at run time by an MLP over log-spaced coordinates,
    # shifted windows; one block a stage
    "swinv2-cosine": ("timm", dict(model_name="swinv2_tiny_window8_256", img_size=128, depths=(1, 1, 1, 1),
                                   embed_dim=48, num_heads=(2, 4, 8, 16)), None, 4),
    # Hugging Face's window transformers: their own partition, a shift mask added in a regrouped
    # view of the logits (Swin v2 adds it twice), cosine attention and a bias MLP in v2
    "hf-swin-shifted": ("SwinModel", dict(image_size=64, patch_size=4, embed_dim=32, depths=[2, 2],
                                          num_heads=[2, 4], window_size=4), "eager", 4),
    "hf-swinv2-shifted": ("Swinv2Model", dict(image_size=64, patch_size=4, embed_dim=32, depths=[2, 2],
                                              num_heads=[2, 4], window_size=4), "eager", 4),
    # rotary placed elsewhere (issue 30): ESM scales q before rotating it; DINOv3 rotates the
    # patch tokens only (a split of the tokens, cls and register tokens left as they are, then
    # concatenated back) with cos/sin computed at run time from the grid of patch centres
    "esm-rotary-scaled-q": ("EsmModel", dict(TEXT, position_embedding_type="rotary", pad_token_id=1), "sdpa", LAYERS),
    "dinov3-rope-patches": ("DINOv3ViTModel", dict(hidden_size=128, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                                   intermediate_size=256, image_size=32, patch_size=8,
                                                   num_register_tokens=2), "sdpa", LAYERS),
}
ROPE_ELSEWHERE = ("esm-rotary-scaled-q", "dinov3-rope-patches")
SOFTMAXES = {"levit-bias-table": 82, "swinv2-cosine": 30, "hf-swin-shifted": 12, "hf-swinv2-shifted": 12}  # per-head softmaxes; the others have HEADS per attention


def example(name: str, model):
    """The adapter's inputs; a timm model built for another image size than its pretrained
    config's (LeViT keeps no record of it) gets images of that size."""
    if FAMILIES[name][0] == "timm":
        size = FAMILIES[name][1]["img_size"]
        return (torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)),)
    from ane_rewrite.frontend import models

    return models.example_inputs(model, seq_len=SEQ)


def softmaxes(name: str) -> int:
    return SOFTMAXES.get(name, FAMILIES[name][3] * HEADS)


def build(name: str):
    cls_name, config, implementation, _ = FAMILIES[name]
    if cls_name == "timm":
        import timm

        with torch.random.fork_rng():
            torch.manual_seed(0)
            return timm.create_model(pretrained=False, **config).eval()
    cls = getattr(transformers, cls_name)
    config = cls.config_class(**config)
    config._attn_implementation = implementation
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(config).eval()
