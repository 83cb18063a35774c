"""Weight compression of an exported ML Program, through ``coremltools.optimize.coreml``.

    palettize4   each weight a 4-bit index into a 16-entry look-up table (k-means), per tensor
    palettize6   the same with 6 bits (64 entries)
    int8         linear 8-bit quantization, per output channel (symmetric)

Palettization is how LLM and diffusion deployments on Apple silicon fit and speed up
(docs/ane.md, modern decoders); per-tensor tables are what the iOS 16 target that ``export``
uses holds (grouped-channel tables need iOS 18). Weights of fewer than ``MIN_WEIGHT_ELEMENTS``
elements (norms, biases) stay fp16: they cost nothing and carry the most error per bit. The
accuracy cost is not assumed: ``verify`` executes the compressed package against the model
(the CLI prints it beside the size).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .saving import bars, check_path, save

COMPRESSIONS = ("palettize4", "palettize6", "int8")
MIN_WEIGHT_ELEMENTS = 2048


def _config(kind: str):
    import coremltools.optimize.coreml as cto

    if kind.startswith("palettize"):
        op = cto.OpPalettizerConfig(nbits=int(kind.removeprefix("palettize")), mode="kmeans",
                                    granularity="per_tensor", weight_threshold=MIN_WEIGHT_ELEMENTS)
        return cto.palettize_weights, op
    op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                     weight_threshold=MIN_WEIGHT_ELEMENTS)
    return cto.linear_quantize_weights, op


def check_kind(kind: str) -> None:
    if kind not in COMPRESSIONS:
        raise InputError(f"compress must be one of {', '.join(COMPRESSIONS)}, not {kind!r}")


def compress(mlmodel, kind: str, progress: bool = True):
    """``mlmodel`` with its weights compressed as ``kind`` (one of ``COMPRESSIONS``): a new MLModel.
    ``progress=False`` silences coremltools' progress bars."""
    import coremltools.optimize.coreml as cto


    check_kind(kind)
    fn, op = _config(kind)
    with bars(progress):
        return fn(mlmodel, cto.OptimizationConfig(global_config=op))


def weights_bytes(path: str | Path) -> int:
    """The size of a saved package's weight files."""
    folder = Path(path) / "Data" / "com.apple.CoreML" / "weights"
    return sum(f.stat().st_size for f in folder.iterdir()) if folder.is_dir() else 0


def save_compressed(mlmodel, kind: str, path: str | Path, overwrite: bool = False, progress: bool = True):
    """``mlmodel`` compressed as ``kind`` and saved at ``path`` (written aside, then renamed)."""
    path = Path(path)
    check_path(path, overwrite)
    compressed = compress(mlmodel, kind, progress)
    save(compressed, path)
    return compressed
