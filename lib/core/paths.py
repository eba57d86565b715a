"""Where the workspace is: its root folder, against which the relative paths of a local run resolve."""

from __future__ import annotations

import os
from pathlib import Path

# lib/core/paths.py -> the repository (lib is installed editable into .venv, so this is the checkout).
WORKSPACE = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = WORKSPACE / "notebooks"
PARAMS_DIR = WORKSPACE / "params"


def at_workspace(path: str | os.PathLike) -> Path:
    """A path as a local run means it: absolute as given, or relative to the workspace root (where `make run` and
    papermill run the notebooks), so JupyterLab, the runner and every command find the same warehouse."""
    path = Path(path)
    if str(path).startswith("~"):
        try:
            path = path.expanduser()
        except RuntimeError:  # ~user without a home: left as given, for the folder check to refuse with its reason
            return path
    return path if path.is_absolute() else WORKSPACE / path
