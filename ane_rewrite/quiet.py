"""Third-party messages a normal run does not need, silenced one by one; ``-v`` keeps them all.

Each is matched exactly (a pattern of its whole text), with why it says nothing about this run;
any other message of the same library still shows. ``install()`` is called by the command line
before coremltools is imported (its first messages come at import); the library itself changes
no logging or warning state (no import-time side effects).
"""
from __future__ import annotations

import logging
import re
import warnings

KNOWN = {
    # Linux: coremltools has no Core ML framework to load packages into; ane_rewrite executes
    # them itself (runtime/), so the missing proxies are expected.
    r"Failed to load _ML\w+Proxy: No module named 'coremltools\.libcoremlpython'":
        "no Core ML framework on Linux",
    # The torch release pinned with coremltools 9.0 in pyproject.toml; this pair is what the
    # test suite checks, which is the compatibility statement the warning asks for.
    r"Torch version [\w.+]+ has not been tested with coremltools\. You may run into unexpected errors\. "
    r"Torch [\d.]+ is the most recent version that has been tested\.": "the pinned torch, tested here",
    # torch.export's integer constants (shapes, positions, indices) are int64; Core ML stores them
    # as int32. coremltools warns on the dtype, not on the values, which are far below 2³¹.
    r"Saving value type of int64 into a builtin type of int32, might (lose precision|overflow or loses precision)!":
        "int64 constants stored as int32",
    # Hugging Face embeddings carry padding_idx, which only masks gradients: in eval mode the lookup
    # is the same without it.
    r"Core ML embedding \(gather\) layer does not support any inputs besides the weights and indices\. "
    r"Those given will be ignored\.": "padding_idx only matters for training",
    # coremltools' converter of scikit-learn *models* checks the version at import; ane_rewrite
    # uses scikit-learn only for the k-means of palettization (compress.py), which works with it.
    r"scikit-learn version [\w.]+ is not supported\. Minimum required version: [\w.]+\. "
    r"Maximum required version: [\w.]+\. Disabling scikit-learn conversion API\.": "an unused converter",
    # kmeans1d is an optional faster solver of the same one-dimensional clustering.
    r"It would be better to use kmeans1d but that is not available\. Using scikit-learn for K-means\.":
        "an optional speed-up",
}
_PATTERN = re.compile("|".join(f"(?:{p})" for p in KNOWN) + r"\Z")


class KnownMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _PATTERN.match(record.getMessage()) is None


_FILTER = KnownMessages()


def install() -> None:
    """Silence the messages of ``KNOWN`` (idempotent), numpy's overflow warning from coremltools'
    range analysis of fp16 constants (it casts ±inf bounds to fp16 on purpose), and numpy's
    invalid-value warnings of coremltools' int8 quantization of a channel that is all zeros (an
    embedding's padding row): its scale is 0, so 0 / 0 is NaN, cast to some int8 — and the
    channel dequantizes to that int8 × 0 = 0, exactly what it held."""
    logger = logging.getLogger("coremltools")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message="overflow encountered in cast", category=RuntimeWarning,
                            module=r"coremltools\.converters\.mil\.mil\.(passes\.defs\.optimize_repeat_ops|ops\.defs\.iOS15\.elementwise_unary)")
    warnings.filterwarnings("ignore", message="invalid value encountered in (divide|cast)", category=RuntimeWarning,
                            module=r"coremltools\.optimize\._utils")
