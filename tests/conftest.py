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
    ``attention_cost``, and benchmarks/compare_zoo.py), where the default pipeline decides.
    Session-wide, so that module fixtures see it too."""
    import ane_rewrite.passes as passes

    default = passes.default_pipeline
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passes, "default_pipeline",
                      lambda lower_every_attention=True, **kw: default(lower_every_attention=lower_every_attention, **kw))
        yield default


@pytest.fixture(autouse=True)
def _cost_check(request, _lower_every_attention, monkeypatch):
    if request.node.get_closest_marker("attention_cost") is not None:
        import ane_rewrite.passes as passes

        monkeypatch.setattr(passes, "default_pipeline", _lower_every_attention)
