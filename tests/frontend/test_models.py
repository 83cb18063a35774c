"""ane_rewrite/frontend/models.py: sources and example inputs (the model-family adapters)."""
import pytest
import torch

from ane_rewrite.frontend import models
from ane_rewrite.errors import InputError, SourceError
from tests.zoo import distilbert, mlp_block, vit_tiny


def test_hf_text_inputs_are_ids_within_the_vocabulary_and_a_mask():
    model, _ = distilbert()
    ex = models.example_inputs(model, seq_len=20, batch=3)
    assert set(ex) == {"input_ids", "attention_mask"}
    assert ex["input_ids"].shape == (3, 20) and ex["attention_mask"].shape == (3, 20)
    assert 0 <= int(ex["input_ids"].min()) and int(ex["input_ids"].max()) < model.config.vocab_size


def test_hf_text_inputs_refuse_a_sequence_longer_than_the_positions():
    model, _ = distilbert()
    with pytest.raises(InputError, match="exceeds"):
        models.example_inputs(model, seq_len=129)


def test_timm_inputs_take_the_image_size_from_the_config():
    model, _ = vit_tiny()
    (x,) = models.example_inputs(model, batch=2)
    assert x.shape == (2, 3, 224, 224)


def test_unknown_model_needs_explicit_inputs():
    model, _ = mlp_block()
    with pytest.raises(InputError, match="example_inputs="):
        models.example_inputs(model)


def test_sources_resolve():
    assert type(models.load("hf:BertModel")).__name__ == "BertModel"
    assert type(models.load("hf:distilbert")).__name__ == "DistilBertModel"
    assert models.load("hf:DistilBertForSequenceClassification").config.num_labels == 2
    assert type(models.load("tests.zoo:tiny_distilbert_model")).__name__ == "DistilBertForSequenceClassification"


@pytest.mark.parametrize("source,message", [
    ("nonsense", "is not"),
    ("hf:NoSuchModelAnywhere", "neither a local model directory"),
    ("no_such_module_xyz:make", "cannot import"),
    ("tests.zoo:nothing_here", "no callable"),
])
def test_bad_sources_name_their_cause(source, message):
    with pytest.raises(SourceError, match=message):
        models.load(source)


def test_prepare_turns_off_the_kv_cache_of_decoders():
    from tests.zoo import gpt2

    model, _ = gpt2()
    assert models.call_options(model, {"input_ids": torch.zeros(1, 2, dtype=torch.long)}) == {"use_cache": False}
    models.prepare(model)
    assert model.config.use_cache is False


def test_a_source_gives_the_same_model_every_time():
    a = models.load("tests.zoo:tiny_distilbert_model").state_dict()
    state = torch.random.get_rng_state()
    b = models.load("tests.zoo:tiny_distilbert_model").state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name, main", [("t5-seq2seq", "input_ids"), ("bart-seq2seq", "input_ids"),
                                        ("whisper-seq2seq", "input_features")])
def test_seq2seq_inputs_feed_the_encoder_and_the_decoder(name, main):
    from tests.attention_families import build

    model = build(name)
    ex = models.example_inputs(model, seq_len=40)
    assert main in ex and ex["decoder_input_ids"].shape == (1, 40)
    if main == "input_features":  # the encoder's full window: two frames per position
        assert ex[main].shape == (1, 80, 2 * model.config.max_source_positions)
    assert int(ex["decoder_input_ids"].max()) < model.config.vocab_size
    with torch.no_grad():
        model(**ex)


def test_prepare_turns_off_the_cache_of_a_seq2seq_decoder_config():
    """T5's decoder stack holds a copy of the config: its use_cache is turned off too (else the
    captured model returns a cache object torch.export cannot flatten)."""
    from tests.attention_families import build

    model = models.prepare(build("t5-seq2seq"))
    assert all(not getattr(m.config, "use_cache", False) for m in model.modules() if hasattr(m, "config"))


def test_raw_audio_inputs_make_seq_len_frames():
    import transformers

    config = transformers.Wav2Vec2Config(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=128, conv_dim=(32, 32), conv_stride=(5, 2),
                                         conv_kernel=(10, 3), num_feat_extract_layers=2)
    model = transformers.Wav2Vec2Model(config).eval()
    ex = models.example_inputs(model, seq_len=20)
    assert ex["input_values"].shape == (1, 200)
    with torch.no_grad():
        assert model(**ex).last_hidden_state.shape[1] <= 20
