"""The ANE rewrite passes, one module per pass, and the default pipeline they form."""
from ane_rewrite.rewrite.pipeline import Pipeline

from .attention import attention, make_attention_pass
from .batched_heads import batched_heads
from .cleanup import cleanup
from .group_norm import group_norm
from .joint_heads import joint_heads
from .layer_norm import layer_norm
from ._regions import declined_attentions, mark_kept, merge_reasons, unlowered_regions
from .layout import layout
from .options import PassOptions
from .rms_norm import rms_norm
from .rotary import rotary
from .softmax import make_softmax_pass, softmax
from .window_groups import window_groups
from .windows import windows


def default_pipeline(max_queries_per_chunk: int = 512, max_chunk_bytes: int = 1 << 20,
                     lower_every_attention: bool = False) -> Pipeline:
    """windows → rms_norm → layout → joint_heads → rotary → attention → batched_heads → softmax → layer_norm → group_norm →
    cleanup → window_groups, with the
    constraints that fix that order. ``max_queries_per_chunk`` and ``max_chunk_bytes`` set the
    softmax chunking (see ``passes/softmax.py``); ``lower_every_attention`` lowers an attention
    per head even where the estimator says its batched form is faster (``_attention_cost``).
    They are checked as one ``PassOptions``, which the passes that depend on them are made from."""
    options = PassOptions(max_queries_per_chunk, max_chunk_bytes, lower_every_attention)
    return Pipeline(
        [windows, rms_norm, layout, joint_heads, rotary, make_attention_pass(options), batched_heads,
         make_softmax_pass(options.max_queries_per_chunk, options.max_chunk_bytes), layer_norm, group_norm, cleanup,
         window_groups],
        constraints=[
            ("windows", "layout", "layout's view rules and attention's head analysis see rank-≤4 chains"),
            ("layout", "attention", "attention lowers heads of the channel axis of (B, C, 1, S) projections"),
            ("attention", "batched_heads", "batched_heads reads the heads of the attentions attention left batched"),
            ("attention", "window_groups", "window_groups regroups the per-head einsums attention emits"),
            ("cleanup", "window_groups", "window_groups reads the window movements as cleanup leaves them folded"),
            ("attention", "softmax", "softmax chunks the per-head attention that attention emits"),
            ("layout", "layer_norm", "layer_norm rewrites norms whose input layout already moved to channels-first"),
            ("rms_norm", "layout", "layout propagates the conversions rms_norm wraps each norm in"),
            ("rms_norm", "attention", "q and k are head splits again once their per-head norms are channel norms"),
            ("layout", "rotary", "rotary turns heads of the (B, C, 1, S) projections that layout made"),
            ("layout", "joint_heads", "joint_heads concatenates the (B, C, 1, S) projections that layout made"),
            ("joint_heads", "rotary", "a rotation over the joint tokens reads one head split"),
            ("joint_heads", "attention", "joint attention's q, k and v are head splits once their streams are joined"),
            ("rotary", "attention", "q and k are head splits again once rotated on the channels-first tensor"),
            ("layer_norm", "cleanup", "cleanup cancels the conversions that the earlier passes leave face to face"),
            ("rms_norm", "cleanup", "cleanup cancels the conversions that the earlier passes leave face to face"),
            ("group_norm", "cleanup", "cleanup folds the reshapes group_norm leaves beside the model's own"),
        ],
        options=options,
    )


__all__ = ["group_norm", "joint_heads", "PassOptions", "make_attention_pass", "declined_attentions", "mark_kept", "merge_reasons", "unlowered_regions", "attention", "batched_heads", "cleanup", "window_groups", "default_pipeline", "layer_norm", "layout", "make_softmax_pass", "rms_norm", "rotary", "softmax", "windows"]
