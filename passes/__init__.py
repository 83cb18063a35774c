"""The ANE rewrite passes, one module per pass, and the default pipeline they form."""
from ane_rewrite.pipeline import Pipeline

from .attention import attention
from .cleanup import cleanup
from .layer_norm import layer_norm
from .layout import layout


def default_pipeline() -> Pipeline:
    """layout → attention → layer_norm → cleanup, with the constraints that fix that order."""
    return Pipeline(
        [layout, attention, layer_norm, cleanup],
        constraints=[
            ("layout", "attention", "attention lowers heads of the channel axis of (B, C, 1, S) projections"),
            ("layout", "layer_norm", "layer_norm rewrites norms whose input layout already moved to channels-first"),
            ("layer_norm", "cleanup", "cleanup cancels the conversions that the earlier passes leave face to face"),
        ],
    )


__all__ = ["attention", "cleanup", "default_pipeline", "layer_norm", "layout"]
