"""The project's own files, for the tests that police the source: found by walking the checkout
and leaving out what is not the project's — a virtualenv (a folder holding ``pyvenv.cfg``, as
``python -m venv .venv`` makes inside the checkout), hidden folders (``.git``, caches), builds
and installed packages."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_OURS = {"build", "dist", "__pycache__", "node_modules", "site-packages", "ane_rewrite_out"}


def foreign(folder: Path) -> bool:
    """A folder whose files are not the project's."""
    name = folder.name
    return (name.startswith(".") or name in NOT_OURS or name.endswith(".egg-info")
            or (folder / "pyvenv.cfg").exists())


def project_files(suffix: str, under: Path = ROOT) -> list[Path]:
    """Every file ending in ``suffix`` under ``under`` (the checkout by default), in order."""
    found = []
    for folder, subfolders, files in os.walk(under):
        subfolders[:] = sorted(d for d in subfolders if not foreign(Path(folder) / d))
        found += [Path(folder) / f for f in sorted(files) if f.endswith(suffix)]
    return found


def ignore_foreign(folder: str, names: list[str]) -> set[str]:
    """``shutil.copytree``'s ``ignore``: copy the checkout without what is not the project's."""
    return {n for n in names if (Path(folder) / n).is_dir() and foreign(Path(folder) / n)}
