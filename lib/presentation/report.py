"""HTML run reports: one self-contained page per run (quality first, notebooks without code) and the runs index."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jinja2

STATUS_COLOURS = {"ok": "#1a7f37", "failed": "#cf222e", "running": "#9a6700", "interrupted": "#9a6700"}

# Beside this module (not under lib/templates): the folder moves with the module when it moves into a package.
TEMPLATES = Path(__file__).parent / "report_templates"


@functools.lru_cache(maxsize=1)
def _templates():
    # Autoescape on every template: every value is escaped where it lands; only nbconvert's HTML is marked safe.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    environment.globals["colours"] = STATUS_COLOURS
    return environment


def _render(template: str, **values) -> str:
    return _templates().get_template(template).render(**values)


def render_notebook(path: Path) -> str:
    """An executed notebook as an HTML fragment: markdown and outputs, no code, images embedded as data URIs."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        template_file="base.html.j2",  # the cells only: this page brings its own head and styles
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        # A Figure built without pyplot shows as "<Figure size ...>" text: the PNG it saved is placed below instead.
        cell["outputs"] = [o for o in cell.get("outputs", []) if not _is_figure_placeholder(o)]
    body, _ = exporter.from_notebook_node(notebook)
    return body


def _is_figure_placeholder(output: dict) -> bool:
    data = output.get("data", {})
    return "image/png" not in data and str(data.get("text/plain", "")).startswith("<Figure size")


def _figures_of(notebook: str, figures: list[str]) -> list[str]:
    """The PNGs a notebook saved: their names start with its number (01_ingest -> 01_ingest_coverage.png)."""
    prefix = notebook.split("_", 1)[0] + "_"
    return [f for f in figures if f.startswith(prefix)]


def write_run_report(run_dir: Path, record: dict) -> Path:
    """Write <run_dir>/index.html from the run record and the executed notebooks found next to it: quality first
    (failures first), the notebooks without code, the figures linked relative to the run folder."""
    from markupsafe import Markup

    run_dir = Path(run_dir)
    params = record.get("parameters", {})
    span = (
        params.get("ds") if params.get("start_ds") in (None, "", params.get("ds")) else f"{params['start_ds']} .. {params['ds']}"
    )
    quality = record.get("quality") or {}
    checks = sorted(quality.get("checks") or [], key=lambda c: (c["status"] != "fail", c["severity"] != "error", c["check_name"]))
    figures = record.get("figures") or []
    sections = []
    for result in record.get("notebooks", []):
        executed = run_dir / f"{result['notebook']}.ipynb"
        if result["status"] == "not run" or not executed.is_file():
            continue
        # nbconvert's HTML of the run's own notebook (it escapes the outputs' text itself): the one value not escaped here.
        fragment = Markup(render_notebook(executed))
        sections.append({"name": result["notebook"], "html": fragment, "figures": _figures_of(result["notebook"], figures)})
    page = _render(
        "run.html.j2", title=f"Run {span}", span=span, record=record, quality=quality, checks=checks,
        tables=record.get("tables") or {}, calls=record.get("calls") or {}, figures=figures, notebook_sections=sections,
        versions=record.get("versions") or {},
    )  # fmt: skip
    path = run_dir / "index.html"
    path.write_text(page)
    return path


def load_records(runs_root: Path) -> list[tuple[Path, dict]]:
    """Every run record directly under runs_root, newest ds first (then latest finished)."""
    records = []
    for path in Path(runs_root).glob("*/run.json"):
        try:
            records.append((path.parent, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # a record being written, or not ours
    records.sort(
        key=lambda item: (str(item[1].get("parameters", {}).get("ds", "")), str(item[1].get("finished_at", ""))), reverse=True
    )
    return records


def write_runs_index(runs_root: Path) -> Path:
    """Write <runs_root>/index.html: all runs, newest first, with status and a link to each report."""
    runs_root = Path(runs_root)
    runs = []
    for run_dir, record in load_records(runs_root):
        notebooks = record.get("notebooks", [])
        runs.append({
            "name": run_dir.name, "record": record, "params": record.get("parameters", {}),
            "quality": record.get("quality") or {},
            "target": f"{run_dir.name}/index.html" if (run_dir / "index.html").is_file() else f"{run_dir.name}/run.json",
            "notebooks": len(notebooks), "notebooks_ok": sum(1 for n in notebooks if n["status"] == "ok"),
        })  # fmt: skip
    path = runs_root / "index.html"
    runs_root.mkdir(parents=True, exist_ok=True)
    path.write_text(_render("runs.html.j2", title="Runs", runs=runs))
    return path
