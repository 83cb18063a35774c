"""ane_rewrite: rewrite ordinary PyTorch models into the form the Apple Neural Engine runs well.

    optimize(model, example_inputs=None) → rewritten GraphModule (model untouched)
    verify(reference, candidate, example_inputs) → EquivalenceReport
    export(model, example_inputs, path) → coremltools MLModel, saved as .mlpackage
    analyze(mlmodel or path) → Analysis: findings by ANE placement rule, metrics, estimates
    execute(mlmodel or path, inputs, precision="fp16") → {output name: array}: the saved ML
        Program run on this machine (ane_rewrite.runtime); verify(reference, path, inputs) checks it
    fp16_hazards(mlmodel or path, inputs) → HazardReport: ops that overflow, underflow or turn NaN in fp16
    optimize_causal_lm(model, max_len=256, prefill_len=64) → CausalLM: prefill and decode rewritten,
        a KV cache in the (B, C, 1, S) layout, lm.generate(input_ids, max_new_tokens) (greedy),
        lm.export(path) → one stateful multifunction package (prefill, decode)
    generate_exported(path, input_ids, max_new_tokens) → greedy tokens of that package, executed here
    optimize_lengths(model, seq_lens) → Lengths: rewritten per length; .export(path) → one package
        with a function per length (seq_<N>), weights shared; .verify_package(path) per length
"""
from ._source_tree import map_passes as _map_passes

_map_passes()  # ane_rewrite.passes in a source checkout (an install has it as a subpackage)

from .errors import (AneRewriteError, CaptureError, EquivalenceError, ExecutionError, ExportError, InputError,
                     LintError, RewriteError, SourceError)
from .optimize import optimize
from .equivalence import EquivalenceReport
from .equivalence import verify as _verify_modules


def verify(reference, candidate, example_inputs, draws=None, *, precision="fp32", source=None):
    """Does ``candidate`` compute ``reference``'s function? ``candidate`` is a module (compared in
    PyTorch: ``equivalence/verify.py``, 3 draws by default) or an exported model — a .mlpackage
    path, an ``MLModel``, a loaded ``runtime.Executable`` — executed in ``precision`` ("fp32" or
    "fp16"; ``source`` the GraphModule it was exported from, for the first diverging MIL op;
    ``runtime/verify.py``)."""
    from .runtime.verify import is_exported, verify_exported

    if is_exported(candidate):
        return verify_exported(reference, candidate, example_inputs, draws, precision, source)
    return _verify_modules(reference, candidate, example_inputs, 3 if draws is None else draws)


def export(model, example_inputs, path=None, **options):
    """Convert ``model`` to a Core ML ML Program (see ``ane_rewrite.export_coreml``)."""
    from .coreml.export import export as _export

    return _export(model, example_inputs, path, **options)


def analyze(model, profiles=None, function=None):
    """Static ANE readiness report of a Core ML ML Program, or of one ``function`` of a
    multifunction one (see ``ane_rewrite.analysis``)."""
    from .analysis.report import analyze as _analyze

    return _analyze(model, profiles, function=function)


def execute(model, inputs, precision: str = "fp16"):
    """Outputs of a saved ML Program executed here (see ``ane_rewrite.runtime``)."""
    from .runtime import execute as _execute

    return _execute(model, inputs, precision)


def optimize_causal_lm(model, max_len: int = 256, prefill_len: int = 64, **options):
    """A Hugging Face causal LM rewritten with a fixed-size KV cache (see ``ane_rewrite.generation``)."""
    from .generation import optimize_causal_lm as _optimize_causal_lm

    return _optimize_causal_lm(model, max_len, prefill_len, **options)


def generate_exported(path, input_ids, max_new_tokens: int = 32, precision: str = "fp32"):
    """Greedy tokens of a package ``CausalLM.export`` wrote, executed here (see ``ane_rewrite.generation``)."""
    from .generation import generate_exported as _generate_exported

    return _generate_exported(path, input_ids, max_new_tokens, precision)


def optimize_lengths(model, seq_lens, **options):
    """``model`` rewritten for each sequence length, exported as one package (see ``ane_rewrite.lengths``)."""
    from .lengths import optimize_lengths as _optimize_lengths

    return _optimize_lengths(model, seq_lens, **options)


def fp16_hazards(model, inputs):
    """fp16 overflow, underflow and NaN of a saved ML Program (see ``ane_rewrite.runtime.hazards``)."""
    from .runtime.hazards import fp16_hazards as _hazards

    return _hazards(model, inputs)


__all__ = ["optimize", "optimize_causal_lm", "generate_exported", "verify", "export", "analyze", "execute", "fp16_hazards", "EquivalenceReport",
           "AneRewriteError", "CaptureError", "EquivalenceError", "ExecutionError", "ExportError", "InputError", "LintError",
           "RewriteError", "SourceError"]
