"""70 generated architectures (tests/generated/strategies.py): each comes back from optimize
equivalent over five draws — three more than safe mode's guard saw — or raises a named error;
none comes back silently different. ``benchmarks/generated_architectures.py`` runs 1,000."""
from hypothesis import HealthCheck, given, settings

from .architecture import Spec, build
from .strategies import architectures, check


@settings(max_examples=70, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(architectures())
def test_a_generated_architecture_comes_back_equivalent(spec):
    outcome = check(spec)
    assert outcome.error is None, (spec, outcome.error)
    assert outcome.equivalent, (spec, outcome.psnr, outcome.rolled_back)


def test_the_builder_covers_long_sequences_windows_gqa_and_shared_weights():
    """The corners the strategies reach, built and run once each."""
    specs = [Spec(seq=1024, width=24, heads=4, kv_heads=2, positions="alibi", mask="causal_padding"),
             Spec(kind="vision", seq=8, window=4, width=36, heads=6, kv_heads=3, positions="relative",
                  stem="conv_patch", shared=True, depth=2),
             Spec(seq=1, width=20, heads=5, kv_heads=1, positions="rope_pairs", mask="sliding", parallel=True)]
    for spec in specs:
        model, example = build(spec)
        assert len(model.blocks) == spec.depth
        assert len({id(b) for b in model.blocks}) == (1 if spec.shared else spec.depth)
        outcome = check(spec)
        assert outcome.error is None and outcome.equivalent, (spec, outcome)
