"""The committed notebooks keep papermill's contract: no outputs, one literal parameters cell, no defs."""

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted(Path("notebooks").glob("*.ipynb"))
COMMON = {"ds", "start_ds", "env", "warehouse", "catalog", "namespace", "api_base_url", "strategy", "run_dir"}


def test_the_pipeline_notebooks_exist():
    expected = ["01_ingest", "02_monthly_rollup", "03_quality", "04_trends", "05_forecast", "05_intraday"]
    assert [p.stem for p in NOTEBOOKS] == expected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path} carries outputs in cells {dirty}: run scripts/nbtool.py strip {path}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_literal_parameters_cell_with_every_common_parameter(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path}: {len(tagged)} cells tagged parameters"
    tree = ast.parse(tagged[0].source)
    assigned = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{path}: the parameters cell holds only assignments"
        ast.literal_eval(node.value)  # raises on anything but a literal
        assigned.update(t.id for t in node.targets)
    assert COMMON <= assigned, f"{path}: missing parameters {COMMON - assigned}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_functions_or_classes_in_notebooks(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)), path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_figures_then_asserts(path):
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "assert " in code[-1], f"{path}: the last cell states the step's guarantees with asserts"
    assert any("save_figure" in src for src in code), f"{path}: no figure saved"
