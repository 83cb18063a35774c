"""``ane_rewrite.passes`` when running from a source checkout.

An install maps the checkout's top-level ``passes/`` folder to the subpackage
``ane_rewrite.passes`` (``[tool.setuptools.package-dir]`` in pyproject.toml). In the checkout
itself (``python -m pytest`` puts it first on ``sys.path``) ``ane_rewrite/`` has no
``passes/`` beside its modules, so the same mapping is made here: the folder is loaded under
that one name, and nothing else of the checkout becomes importable through ``ane_rewrite``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NAME = "ane_rewrite.passes"


def map_passes() -> None:
    package = Path(__file__).resolve().parent
    if (package / "passes").is_dir() or NAME in sys.modules:
        return  # installed: the passes are a real subpackage
    init = package.parent / "passes" / "__init__.py"
    if not init.is_file():
        return
    spec = importlib.util.spec_from_file_location(NAME, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    setattr(sys.modules[__package__], "passes", module)  # as the import system binds a subpackage
