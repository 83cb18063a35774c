"""Bad input gets an error that names its cause, the user's model stays bit-identical, and an
export leaves nothing partial on disk (issue 15)."""
import hashlib

import pytest
import torch
from torch import nn

import ane_rewrite
from ane_rewrite.errors import CaptureError, ExportError, InputError


def _bert():
    import transformers

    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=50)
    return transformers.BertModel(config).eval()


def _fingerprint(model: nn.Module) -> tuple:
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().contiguous().numpy().tobytes())
    hooks = [(n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()]
    return digest.hexdigest(), [m.training for m in model.modules()], hooks


IDS, MASK = torch.randint(0, 50, (1, 8)), torch.ones(1, 8, dtype=torch.long)
WRONG_INPUTS = {
    "an extra key": ({"input_ids": IDS, "attention_mask": MASK, "atention_mask": MASK}, InputError,
                     "takes no input 'atention_mask'; its inputs are input_ids, attention_mask"),
    "a missing key": ({"attention_mask": MASK}, CaptureError, "attention_mask \\(1, 8\\) int64.*input_ids"),
    "float token ids": ({"input_ids": IDS.float(), "attention_mask": MASK}, CaptureError,
                        "input_ids \\(1, 8\\) float32.*indices"),
    "a wrong shape": ({"input_ids": IDS[0], "attention_mask": MASK[0]}, CaptureError, "input_ids \\(8,\\) int64"),
    "token ids outside the vocabulary": ({"input_ids": IDS + 100, "attention_mask": MASK}, InputError,
                                         "fails on its example inputs.*index out of range"),
    "a list": ([IDS, MASK], InputError, "a tuple or a dict, not list"),
}


@pytest.mark.parametrize("case", list(WRONG_INPUTS))
def test_wrong_example_inputs_are_named_and_the_model_is_untouched(case):
    model = _bert()
    model.encoder.register_forward_hook(lambda *a: None)
    model.train()  # a training flag of the user's, kept
    before = _fingerprint(model)
    inputs, error, message = WRONG_INPUTS[case]
    with pytest.raises(error, match=message):
        ane_rewrite.optimize(model, inputs)
    assert _fingerprint(model) == before


def test_a_successful_optimize_leaves_the_model_bit_identical():
    model = _bert()
    model.pooler.register_forward_pre_hook(lambda *a: None)
    before = _fingerprint(model)
    ane_rewrite.optimize(model, {"input_ids": IDS, "attention_mask": MASK})
    assert _fingerprint(model) == before and not model.training


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_data_dependent_control_flow_is_named():
    with pytest.raises(CaptureError, match="data-dependent control flow"):
        ane_rewrite.optimize(_Branchy(), (torch.randn(2, 4),))


def test_a_non_module_and_nan_weights_are_refused():
    with pytest.raises(InputError, match="expected a torch.nn.Module, got function"):
        ane_rewrite.optimize(lambda x: x, (torch.randn(2),))
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN or inf: 1.weight"):
        ane_rewrite.optimize(model, (torch.randn(2, 4),))
    with pytest.raises(InputError, match="takes 1 positional inputs, 2 given"):
        ane_rewrite.optimize(nn.Linear(4, 4), (torch.randn(2, 4), torch.randn(2, 4)))


def test_an_op_coremltools_cannot_convert_is_named():
    class Svd(nn.Module):
        def forward(self, x):
            return torch.linalg.svdvals(x)

    fast = ane_rewrite.optimize(Svd(), (torch.randn(2, 4, 4),))
    with pytest.raises(ExportError, match="svd"):
        ane_rewrite.export(fast, fast.example_inputs, progress=False)


def _small():
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU()).eval(), (torch.randn(2, 8),)


def test_output_paths_are_checked_before_converting(tmp_path, monkeypatch):
    model, example = _small()
    target = tmp_path / "m.mlpackage"
    ane_rewrite.export(model, example, target, progress=False)
    with pytest.raises(ExportError, match="exists; pass overwrite=True"):
        ane_rewrite.export(model, example, target, progress=False)
    ane_rewrite.export(model, example, target, progress=False, overwrite=True)
    with pytest.raises(ExportError, match="does not exist"):
        ane_rewrite.export(model, example, tmp_path / "missing" / "m.mlpackage", progress=False)
    with pytest.raises(ExportError, match="saved as a .mlpackage"):
        ane_rewrite.export(model, example, tmp_path / "m.mlmodel", progress=False)
    monkeypatch.setattr("os.access", lambda *a: False)  # (as root every folder is writable)
    with pytest.raises(ExportError, match="is not writable"):
        ane_rewrite.export(model, example, tmp_path / "other.mlpackage", progress=False)


def test_an_interrupted_save_leaves_nothing_partial_and_keeps_the_old_package(tmp_path, monkeypatch):
    import coremltools as ct

    model, example = _small()
    real_save = ct.models.MLModel.save

    def interrupted(self, path):
        real_save(self, path)  # the package is complete on disk…
        raise KeyboardInterrupt  # …and the process is stopped before it is in place

    target = tmp_path / "m.mlpackage"
    monkeypatch.setattr(ct.models.MLModel, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ane_rewrite.export(model, example, target, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(ct.models.MLModel, "save", real_save)
    ane_rewrite.export(model, example, target, progress=False)
    manifest = (target / "Manifest.json").read_bytes()
    monkeypatch.setattr(ct.models.MLModel, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ane_rewrite.export(model, example, target, progress=False, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlpackage"]
    assert (target / "Manifest.json").read_bytes() == manifest


def test_every_error_is_importable_from_the_package():
    """The errors the docs name (``strict=True`` raises EquivalenceError) are ane_rewrite's API."""
    import inspect

    from ane_rewrite import errors

    raised = {name for name, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.AneRewriteError)}
    assert raised <= set(ane_rewrite.__all__)
    assert all(getattr(ane_rewrite, name) is getattr(errors, name) for name in raised)
