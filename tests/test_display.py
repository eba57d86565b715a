"""lib.presentation.display in a real kernel: a Figure shows as a PNG picture, the workspace's errors as one line
(the cell still fails)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent


def executed(tmp_path: Path, *sources: str) -> list[dict]:
    """Run the cells in a python3 kernel with papermill; the code cells' outputs, whether or not a cell failed."""
    import papermill

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(f"import sys; sys.path.insert(0, {str(REPO)!r})"),
                      *(nbformat.v4.new_code_cell(source) for source in sources)]  # fmt: skip
    source, target = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook, source)
    try:
        papermill.execute_notebook(str(source), str(target), kernel_name="python3", progress_bar=False)
    except papermill.PapermillExecutionError:
        pass
    cells = json.loads(target.read_text())["cells"]
    return [cell["outputs"] for cell in cells if cell["cell_type"] == "code"][1:]


def test_a_figure_is_a_png_output_and_a_config_error_is_one_line(tmp_path):
    figure_outputs, error_outputs = executed(
        tmp_path,
        "from lib.presentation import plots\nfrom lib.running import runtime\nimport pandas as pd\n"
        "plots.correlation_heatmap(pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=['A', 'B'], columns=['A', 'B']))",
        "from lib.settings.config import RunConfig\nRunConfig.from_params(ds='2024/1/2')",
    )
    (result,) = figure_outputs
    png = base64.b64decode(result["data"]["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert "Figure size" not in result["data"]["text/plain"]

    (error,) = error_outputs
    assert error["output_type"] == "error" and error["ename"] == "DsFormatError"
    shown = "".join(error["traceback"])
    assert "ds must be YYYY-MM-DD, got '2024/1/2'" in shown
    assert "File " not in shown and "Traceback" not in shown and len(error["traceback"]) <= 2


def test_other_exceptions_keep_their_full_traceback(tmp_path):
    (outputs,) = executed(tmp_path, "from lib.running import runtime\n{}['missing']")
    (error,) = outputs
    assert error["ename"] == "KeyError"
    assert len(error["traceback"]) > 2


def test_install_outside_ipython_does_nothing():
    from lib.presentation import display

    assert display.install() is False
