"""A notebook as a Glue job script: papermill injects the parameters, the code cells run in order.

IPython magics and display-only lines are dropped (a job has nobody to show them to); everything
else runs as written, so the job makes the same `lib` calls as the notebook.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from lib.core.errors import ConfigError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"  # the cell papermill adds after the parameters cell


class ConversionError(ConfigError):
    """A notebook cell cannot become job code."""


def notebook_path(notebook: str | Path) -> Path:
    """The notebook file, or an error that lists the notebooks there are."""
    path = Path(notebook)
    if path.suffix == ".ipynb" and path.is_file():
        return path
    folder = path.parent if path.parent.is_dir() else Path("notebooks")
    available = sorted(str(p) for p in folder.glob("*.ipynb")) or ["(none)"]
    raise ConfigError(f"notebook {str(notebook)!r} not found (expected an .ipynb file); available: {', '.join(available)}")


def plain_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Dates from YAML (an unquoted 2024-03-28) as ISO strings, the way the notebooks expect them."""
    return {name: value.isoformat() if isinstance(value, dt.date) else value for name, value in parameters.items()}


def prepare_notebook(notebook: str | Path, parameters: dict[str, Any], explicit: tuple[str, ...] = ()):
    """papermill's parameter injection without executing: the notebook as the job will run it."""
    import nbformat
    import papermill

    source = notebook_path(notebook)
    # Like lib.run: a params file's values go to the notebooks that declare them; -p overrides go through.
    declared = papermill.inspect_notebook(str(source))
    parameters = {name: value for name, value in parameters.items() if name in declared or name in explicit}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / source.name
        papermill.execute_notebook(
            str(source), str(prepared), parameters=plain_parameters(parameters), prepare_only=True,
            progress_bar=False, log_output=False,
        )  # fmt: skip
        return nbformat.read(prepared, as_version=4)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parameter_values(nb) -> dict[str, Any]:
    """The effective parameters: the parameters cell, then papermill's injected values (literals only)."""
    values: dict[str, Any] = {}
    for cell in nb.cells:
        tags = _tags(cell)
        if cell.cell_type != "code" or not ({PARAMETERS_TAG, INJECTED_TAG} & set(tags)):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError as exc:
                    raise ConversionError(f"the parameters cell must hold literals only, found {ast.unparse(node)!r}") from exc
                for target in node.targets:
                    values[target.id] = value
    return values


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _drop_magics(source: str) -> list[str]:
    """IPython line magics and shell escapes become comments (or `pass` inside a block)."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            indent = _indent_of(line)
            lines.append(f"{indent}pass  # IPython only: {stripped}" if indent else f"# IPython only: {stripped}")
        else:
            lines.append(line)
    return lines


def _is_display_call(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    return (isinstance(func, ast.Name) and func.id == "display") or (isinstance(func, ast.Attribute) and func.attr == "display")


def _is_ipython_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == "IPython"
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "IPython" for alias in node.names)
    return False


def _shows_only(node: ast.AST) -> bool:
    """A bare trailing expression that a notebook displays and a script would throw away (no call in it)."""
    return isinstance(node, ast.Expr) and not any(isinstance(n, (ast.Call, ast.Await)) for n in ast.walk(node.value))


def cell_to_code(source: str, label: str) -> str:
    """One code cell as script code: magics, display(...) calls, IPython imports and the shown value dropped."""
    if source.lstrip().startswith("%%"):
        return "\n".join(f"# IPython cell magic, not run in a job: {line}" for line in source.splitlines())
    lines = _drop_magics(source)
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as exc:
        raise ConversionError(f"{label} is not Python once its magics are dropped: {exc}") from exc
    # (first line, last line, replacement) for each statement to drop, applied bottom-up.
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if _is_display_call(node) or _is_ipython_import(node):
            edits.append((node.lineno, node.end_lineno, "notebook display only"))
    if tree.body and _shows_only(tree.body[-1]):
        last = tree.body[-1]
        edits.append((last.lineno, last.end_lineno, None))
    for first, last, replacement in sorted(edits, reverse=True):
        dropped = lines[first - 1 : last]
        if replacement is None:
            lines[first - 1 : last] = [f"# shown in the notebook: {line.strip()}" for line in dropped]
        else:
            # A comment at top level; `pass` inside a block, which must keep a statement.
            indent = _indent_of(dropped[0])
            kept = f"{indent}pass  # {replacement}" if indent else f"# {replacement}"
            lines[first - 1 : last] = [f"{kept}: {dropped[0].strip()}"]
    return "\n".join(lines)


def _comment_block(text: str) -> str:
    return "\n".join(f"# {line}".rstrip() for line in text.splitlines())


def notebook_to_script(nb, source_name: str) -> str:
    """The job script: every cell in order (markdown as comments), job arguments read after the parameters."""
    names = list(parameter_values(nb))
    parts = [
        f"# Glue 5.0 job script generated by `python -m lib.glue` from {source_name}.\n"
        "# Parameters were injected by papermill (prepare only); `--name value` job arguments override them.\n"
        "# Do not edit: change the notebook and submit again. IPython magics and display-only lines are dropped.\n"
        "# Locally: PYTHONPATH=. python <this script> [--name value ...]"
    ]
    last_parameters_cell = max(
        (i for i, cell in enumerate(nb.cells) if {PARAMETERS_TAG, INJECTED_TAG} & set(_tags(cell))), default=None
    )
    for index, cell in enumerate(nb.cells):
        label = f"cell {index + 1}" + (f" [{', '.join(_tags(cell))}]" if _tags(cell) else "")
        if cell.cell_type == "markdown":
            parts.append(f"# %% [markdown] {label}\n{_comment_block(cell.source)}")
        elif cell.cell_type == "code":
            parts.append(f"# %% {label}\n{cell_to_code(cell.source, f'{source_name} {label}')}")
        if index == last_parameters_cell and names:
            mapping = "".join(f"    {json.dumps(name)}: {name},\n" for name in names)
            parts.append(
                "# %% Glue job arguments (--ds 2024-03-28 ...) override the parameters above; absent ones keep them.\n"
                "from lib.glue.job_args import resolve_parameters\n\n"
                f"globals().update(resolve_parameters({{\n{mapping}}}))"
            )
    script = "\n\n\n".join(parts) + "\n"
    try:
        compile(script, source_name, "exec")
    except SyntaxError as exc:
        raise ConversionError(f"the script generated from {source_name} does not compile: {exc}") from exc
    return script
