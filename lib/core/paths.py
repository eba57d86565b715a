"""Where the workspace is: its root folder, against which the relative paths of a local run resolve."""

from __future__ import annotations

import os
from pathlib import Path

# lib/core/paths.py -> the repository (lib is installed editable into .venv, so this is the checkout).
WORKSPACE = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = WORKSPACE / "notebooks"
PARAMS_DIR = WORKSPACE / "params"


def workspace_root() -> Path:
    """The workspace a run works in: the nearest folder, from the current one up, that holds both notebooks/ and
    params/ (the checkout, or a copy of one: JupyterLab runs a notebook in its notebooks/ folder), else the checkout
    lib is installed from (a command started anywhere else)."""
    try:
        here = Path.cwd()
    except OSError:  # the current folder was deleted
        return WORKSPACE
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "params").is_dir():
            return folder
    return WORKSPACE


def at_workspace(path: str | os.PathLike) -> Path:
    """A path as a local run means it: absolute as given, or relative to the workspace root (workspace_root: where
    `make run` and papermill run the notebooks), so JupyterLab, the runner and every command find the same warehouse."""
    path = Path(path)
    if str(path).startswith("~"):
        try:
            path = path.expanduser()
        except RuntimeError:  # ~user without a home: left as given, for the folder check to refuse with its reason
            return path
    return path if path.is_absolute() else workspace_root() / path
