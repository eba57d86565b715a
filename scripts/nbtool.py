"""Author the committed notebooks from a compact cell list, stripped of outputs (used by maintainers).

    .venv/bin/python scripts/nbtool.py strip notebooks/*.ipynb   # remove outputs and execution counts
"""

from __future__ import annotations

import sys

import nbformat


def strip(path: str) -> bool:
    """Remove outputs, execution counts and run metadata; keep cell tags. True when the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb)
    if after != before:
        nbformat.write(nb, path)
        return True
    return False


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command != "strip":
        sys.exit(f"unknown command {command!r}; usage: nbtool.py strip NOTEBOOK...")
    for p in paths:
        if strip(p):
            print(f"stripped {p}")
