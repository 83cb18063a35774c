"""The errors ane_rewrite raises; each names its cause."""


class AneRewriteError(Exception):
    """Base class of every error ane_rewrite raises on purpose."""


class InputError(AneRewriteError, ValueError):
    """Example inputs are missing, malformed, or cannot be built for this model."""


class CaptureError(AneRewriteError):
    """torch.export could not capture the model with the given example inputs."""


class RewriteError(AneRewriteError):
    """A rule produced a graph that is not a valid replacement (a bug in a pass)."""


class EquivalenceError(AneRewriteError):
    """A pass changed what the model computes (raised in strict mode; safe mode rolls it back)."""


class LintError(AneRewriteError):
    """The graph is malformed after a pass; the message names the passes already run."""


class ExportError(AneRewriteError):
    """coremltools could not convert the model."""


class SourceError(AneRewriteError, ValueError):
    """A model source string (hf:..., timm:..., module:factory) cannot be resolved."""


class ExecutionError(AneRewriteError):
    """A saved ML Program cannot be executed: an op the interpreter lacks, bad inputs, an op that fails."""
