"""The house: lib/ as packages by part whose imports only go down, the commands under their names, `import lib` from
any folder (the editable install), one reader of -f/-p for every command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core.paths import WORKSPACE
from lib.settings.command_line import cli_value
from lib.settings.config import RunConfig

LIB = WORKSPACE / "lib"
# The floors, bottom up: a module may import from its own part and from parts on lower floors only.
FLOORS = {
    "core": 0, "simulator": 1, "settings": 2, "storage": 3, "ingestion": 4, "quality": 4, "analytics": 4,
    "presentation": 5, "running": 6, "dashboard": 7, "glue": 7, "commands": 8,
}  # fmt: skip
COMMANDS = ("run", "prices", "stream", "wap", "dashboard", "glue", "simulator")


def _part(module: str) -> str:
    parts = module.split(".")
    return "commands" if len(parts) == 2 and (LIB / f"{parts[1]}.py").is_file() else parts[1]


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported lib module, line) for every import of lib in lib/, at any depth."""
    found = []
    for path in sorted(LIB.rglob("*.py")):
        module = ".".join(path.relative_to(WORKSPACE).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lib.") and not node.level:
                found += [(module, node.module, node.lineno)]
            elif isinstance(node, ast.ImportFrom) and node.module == "lib":
                found += [(module, f"lib.{alias.name}", node.lineno) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, node.lineno) for alias in node.names if alias.name.startswith("lib.")]
    return found


def test_every_import_goes_down_a_floor_or_stays_in_its_part():
    upward = [
        f"{module}:{line} imports {target} ({_part(module)} -> {_part(target)})"
        for module, target, line in _imports()
        if module.count(".") and _part(module) != _part(target) and FLOORS[_part(target)] >= FLOORS[_part(module)]
    ]
    assert not upward, "imports that run up or sideways:\n" + "\n".join(upward)


def test_lib_keeps_packages_with_their_job_and_few_top_level_modules():
    top = sorted(p.name for p in LIB.glob("*.py"))
    assert len(top) <= 8, top
    packages = [p for p in LIB.iterdir() if (p / "__init__.py").is_file()]
    assert {p.name for p in packages} >= set(FLOORS) - {"commands"}
    for package in packages:
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), f"{package.name} says no job"
    assert {p.parent.name for p in LIB.glob("*/*.py")} <= {p.name for p in packages}, "a folder of modules is no package"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_from_any_folder(command, tmp_path):
    """Run outside the repository: `lib` comes from the editable install, not from the current folder."""
    done = subprocess.run([sys.executable, "-m", f"lib.{command}", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_a_local_runs_relative_folders_are_the_workspaces_wherever_it_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # JupyterLab runs a notebook in notebooks/, papermill in the root: the same folders
    config = RunConfig.from_params(ds="2024-03-28")
    assert config.warehouse == str(WORKSPACE / "warehouse")
    assert config.run_dir == str(WORKSPACE / "runs" / "2024-03-28")
    assert RunConfig.from_params(ds="2024-03-28", warehouse=str(tmp_path / "wh")).warehouse == str(tmp_path / "wh")


def test_a_copy_of_the_workspace_is_its_own_workspace(tmp_path, monkeypatch):
    """A notebook runs in its notebooks/ folder: the workspace is the nearest folder up holding notebooks/ and params/."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert RunConfig.from_params(ds="2024-03-28").warehouse == str(tmp_path / "warehouse")


@pytest.mark.parametrize(("text", "value"), [
    ("5", 5), ("0.5", 0.5), ("true", True), ('{"a": 1}', {"a": 1}), ("2024-03-28", "2024-03-28"), ("[x", "[x"),
    ("AAPL,MSFT", "AAPL,MSFT"), ("", ""),
])  # fmt: skip
def test_a_p_value_is_typed_once_for_every_command(text, value):
    assert cli_value(text) == value


@pytest.mark.parametrize("command", [["lib.prices", "AAPL", "--start", "2024-03-01", "--end", "2024-03-28"],
                                     ["lib.wap", "status", "--branch", "audit_2024_03_28"]])  # fmt: skip
def test_a_value_yaml_cannot_read_is_judged_by_its_parameter_not_a_yaml_traceback(command, tmp_path):
    done = subprocess.run([sys.executable, "-m", *command, "-p", "horizon_days", "[x"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "yaml" not in done.stderr.lower(), done.stderr
    assert "horizon_days must be an integer from 1 to 250, got '[x'" in done.stderr, done.stderr


def test_lib_as_a_zip_holds_every_module_of_lib():
    """What Glue's --extra-py-files and a cluster's executors import: every file of lib/, under lib/."""
    import io
    import zipfile

    from lib.storage.package import package_lib

    names = set(zipfile.ZipFile(io.BytesIO(package_lib())).namelist())
    expected = {str(Path("lib") / p.relative_to(LIB)) for p in LIB.rglob("*.py") if "__pycache__" not in p.parts}
    assert expected <= names, sorted(expected - names)[:10]
