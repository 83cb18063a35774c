"""quiet: the known third-party messages are silenced one by one, anything else still shows,
and `-v` shows them all."""
import logging
import subprocess
import sys


import ane_rewrite
from ane_rewrite import quiet
from tests import zoo

KNOWN = [
    "Failed to load _MLModelProxy: No module named 'coremltools.libcoremlpython'",
    "Torch version 2.14.1+cu130 has not been tested with coremltools. You may run into unexpected errors. "
    "Torch 2.7.0 is the most recent version that has been tested.",
    "Saving value type of int64 into a builtin type of int32, might lose precision!",
    "Core ML embedding (gather) layer does not support any inputs besides the weights and indices. "
    "Those given will be ignored.",
    "scikit-learn version 1.9.1 is not supported. Minimum required version: 0.17. Maximum required version: 1.5.1. "
    "Disabling scikit-learn conversion API.",
    "It would be better to use kmeans1d but that is not available. Using scikit-learn for K-means.",
]


def _passes(message: str) -> bool:
    record = logging.LogRecord("coremltools", logging.WARNING, __file__, 1, message, None, None)
    return quiet.KnownMessages().filter(record)


def test_known_messages_are_filtered_and_others_are_not():
    assert not any(_passes(m) for m in KNOWN)
    assert _passes("Failed to load _MLModelProxy: some other reason")  # a real failure still shows
    assert _passes("Saving value type of int64 into a builtin type of int8, might lose precision!")
    assert _passes("Torch version 2.14.1 has not been tested. " + KNOWN[1])  # not the whole text


def test_analyze_is_quiet_and_verbose_shows_the_messages(tmp_path):
    model, example = zoo.mlp_block()
    ane_rewrite.export(model, example, tmp_path / "m.mlpackage", progress=False)
    cmd = [sys.executable, "-m", "ane_rewrite.cli", "analyze", str(tmp_path / "m.mlpackage")]
    quiet_run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    verbose_run = subprocess.run(cmd + ["-v"], capture_output=True, text=True, timeout=300)
    assert quiet_run.returncode == verbose_run.returncode == 0
    assert quiet_run.stderr == "", quiet_run.stderr
    assert "Failed to load _MLModelProxy" in verbose_run.stderr
    assert quiet_run.stdout == verbose_run.stdout
