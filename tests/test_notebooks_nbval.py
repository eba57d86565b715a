"""nbval over the four notebooks, on a small universe in a temporary warehouse.

nbval runs a notebook as committed; papermill's prepare-only mode first injects the test's
parameters (a small simulator universe, a temporary warehouse), exactly as a scheduled run would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.e2e]
REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("01_ingest", "02_monthly_rollup", "03_quality", "04_trends")


def test_notebooks_run_top_to_bottom_under_nbval(tmp_path):
    import papermill

    parameters = {
        "ds": "2024-01-05",
        "start_ds": "2023-12-27",
        "warehouse": str(tmp_path / "warehouse"),
        "run_dir": str(tmp_path / "runs"),
        "simulator_tickers": 20,
    }
    prepared = []
    for name in NOTEBOOKS:
        target = tmp_path / f"{name}.ipynb"
        notebook_parameters = {k: v for k, v in parameters.items() if k != "simulator_tickers" or name == "01_ingest"}
        papermill.execute_notebook(
            str(REPO / "notebooks" / f"{name}.ipynb"), str(target), parameters=notebook_parameters, prepare_only=True
        )
        prepared.append(str(target))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("POLYGON_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
         "-o", "addopts=", *prepared],  # fmt: skip
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    figures = list((tmp_path / "runs" / "figures").glob("*.png"))
    assert len(figures) >= 7, figures
