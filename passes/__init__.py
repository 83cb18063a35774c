"""The ANE rewrite passes, one module per pass, and the default pipeline they form."""
from ane_rewrite.rewrite.pipeline import Pipeline

from .attention import attention
from .cleanup import cleanup
from .layer_norm import layer_norm
from .layout import layout
from .softmax import make_softmax_pass, softmax
from .windows import windows


def default_pipeline(max_queries_per_chunk: int = 512, max_chunk_bytes: int = 1 << 20) -> Pipeline:
    """windows → layout → attention → softmax → layer_norm → cleanup, with the constraints that
    fix that order. The options set the softmax chunking (see ``passes/softmax.py``)."""
    return Pipeline(
        [windows, layout, attention, make_softmax_pass(max_queries_per_chunk, max_chunk_bytes), layer_norm,
         cleanup],
        constraints=[
            ("windows", "layout", "layout's view rules and attention's head analysis see rank-≤4 chains"),
            ("layout", "attention", "attention lowers heads of the channel axis of (B, C, 1, S) projections"),
            ("attention", "softmax", "softmax chunks the per-head attention that attention emits"),
            ("layout", "layer_norm", "layer_norm rewrites norms whose input layout already moved to channels-first"),
            ("layer_norm", "cleanup", "cleanup cancels the conversions that the earlier passes leave face to face"),
        ],
    )


__all__ = ["attention", "cleanup", "default_pipeline", "layer_norm", "layout", "make_softmax_pass", "softmax", "windows"]
