import warnings

import pytest
import torch

warnings.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _lower_every_attention():
    """Toy configs (a few heads over a few dozen tokens) test the structure and equivalence of
    the per-head lowering; whether it pays is judged at realistic sizes (the tests marked
    ``attention_cost``, and benchmarks/compare_zoo.py), where the default decides. Session-wide,
    so that module fixtures and passes run on their own see it too."""
    from ane_rewrite.passes import _attention_cost

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_attention_cost, "LOWER_EVERY_ATTENTION", True)
        yield _attention_cost


@pytest.fixture(autouse=True)
def _cost_check(request, _lower_every_attention, monkeypatch):
    if request.node.get_closest_marker("attention_cost") is not None:
        monkeypatch.setattr(_lower_every_attention, "LOWER_EVERY_ATTENTION", False)
