"""A MIL graph pass that fuses the channel LayerNorm our ``layer_norm`` pass emits.

    x ─ reduce_mean₁ ─ sub ─ mul(d, d) ─ reduce_mean₁ ─ add(eps) ─ rsqrt ─ mul(·, d)
      → layer_norm(x, axes=[1], epsilon=eps)

coremltools' own ``fuse_layernorm_or_instancenorm`` (its "pattern 5") recognises this shape but
then looks at the op that *follows* the last mul, taking an ``add`` there for a beta. When the
norm's affine is the identity (weight 1, bias 0: any freshly initialised model), an earlier
``noop_elimination`` removes the affine and the next op is the residual add: the fusion is
refused, and the norm stays seven ops. This pass matches only the normalisation itself, so the
affine (when there is one) stays elementwise, where coremltools folds it into a ``batch_norm``.
It runs right before coremltools' own fusion; ``pipeline()`` returns that pass pipeline.
"""
from __future__ import annotations

NAME = "ane_rewrite::fuse_channel_layer_norm"
_registered = False


def _only_child(var):
    children = list(var.child_ops)
    return children[0] if len(set(id(c) for c in children)) == 1 else None


def _is_mean_over_channels(op) -> bool:
    return (op is not None and op.op_type == "reduce_mean" and op.keep_dims is not None
            and op.keep_dims.val and op.axes is not None and op.axes.val is not None
            and [int(a) % op.x.rank for a in op.axes.val] == [1] and op.x.rank == 4)


def _match(mean_op):
    """The ops of one channel norm rooted at ``mean_op``, its eps and its last op, or None."""
    if not _is_mean_over_channels(mean_op):
        return None
    x = mean_op.x
    sub = _only_child(mean_op.outputs[0])
    if sub is None or sub.op_type != "sub" or sub.x is not x or sub.y is not mean_op.outputs[0]:
        return None
    d = sub.outputs[0]
    muls = {id(c): c for c in d.child_ops}
    if len(muls) != 2 or any(m.op_type != "mul" for m in muls.values()):
        return None
    square = next((m for m in muls.values() if m.x is d and m.y is d), None)
    last = next((m for m in muls.values() if m is not square), None)
    if square is None or last is None:
        return None
    var = _only_child(square.outputs[0])
    if not _is_mean_over_channels(var):
        return None
    add = _only_child(var.outputs[0])
    if add is None or add.op_type != "add":
        return None
    eps = add.y if add.x is var.outputs[0] else add.x
    if eps.val is None or eps.val.size != 1:
        return None
    rsqrt = _only_child(add.outputs[0])
    if rsqrt is None or rsqrt.op_type != "rsqrt" or _only_child(rsqrt.outputs[0]) is not last:
        return None
    if {last.x, last.y} != {rsqrt.outputs[0], d}:
        return None
    return [mean_op, sub, square, var, add, rsqrt, last], float(eps.val.reshape(())), last


def _register() -> None:
    global _registered
    if _registered:
        return
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass
    from coremltools.converters.mil.mil.passes.helper import block_context_manager
    from coremltools.converters.mil.mil.passes.pass_registry import register_pass

    @block_context_manager
    def fuse_block(block) -> int:
        fused = 0
        for op in list(block.operations):
            for inner in op.blocks:
                fused += fuse_block(inner)
            if op.enclosing_block is None:
                continue
            found = _match(op)
            if found is None:
                continue
            ops, eps, last = found
            outputs = {o.name for o in block.outputs}
            if any(o.outputs[0].name in outputs for o in ops[:-1]):
                continue
            out = mb.layer_norm(x=op.x, axes=[1], epsilon=eps, before_op=op, name=last.outputs[0].name)
            if not last.enclosing_block.try_replace_uses_of_var_after_op(
                    anchor_op=last, old_var=last.outputs[0], new_var=out):
                continue
            block.remove_ops(ops)
            fused += 1
        return fused

    @register_pass(namespace="ane_rewrite")
    class fuse_channel_layer_norm(AbstractGraphPass):
        def apply(self, prog):
            for f in prog.functions.values():
                fuse_block(f)

    _registered = True


def pipeline():
    """coremltools' default pass pipeline with this pass right before its own norm fusion, and
    ``norm_affine``'s after its elementwise-to-batch_norm fusion."""
    import coremltools as ct

    from . import norm_affine

    _register()
    pipe = ct.PassPipeline.DEFAULT
    pipe.insert_pass(pipe.passes.index("common::fuse_layernorm_or_instancenorm"), NAME)
    norm_affine.insert(pipe)
    return pipe
