"""HTML run reports: one self-contained page per run (quality first, notebooks without code) and the runs index."""

from __future__ import annotations

import html
import json
from pathlib import Path

STATUS_COLOURS = {"ok": "#1a7f37", "failed": "#cf222e", "running": "#9a6700", "interrupted": "#9a6700"}

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; margin: 0; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 32px; }
.meta { color: #59636e; margin: 0 0 16px; }
.status { display: inline-block; padding: 1px 10px; border-radius: 12px; color: #fff; font-weight: 600; font-size: 13px; }
table.grid { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
table.grid th, table.grid td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; vertical-align: top; }
table.grid th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #ffebe9; } tr.warn td { background: #fff8c5; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; } .figures a { border: 1px solid #d0d7de; padding: 4px; background: #fff; }
.figures img { height: 120px; display: block; }
figure { margin: 16px 0; } figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #59636e; font-size: 13px; }
section.notebook { margin-top: 40px; border-top: 4px solid #d0d7de; padding-top: 8px; }
pre { background: #f6f8fa; padding: 8px 12px; overflow-x: auto; font-size: 13px; white-space: pre-wrap; }
.jp-RenderedImage img, .jp-OutputArea-output img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table, table.dataframe { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
.jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon td, table.dataframe th, table.dataframe td {
  border: 1px solid #d0d7de; padding: 2px 8px; }
.jp-OutputArea-executeResult, .jp-OutputArea-child { margin: 6px 0; }
.anchor-link { display: none; }
.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"] pre { background: #ffebe9; }
.ansi-red-fg { color: #cf222e; } .ansi-green-fg { color: #1a7f37; } .ansi-cyan-fg { color: #0969da; }
.ansi-yellow-fg { color: #9a6700; } .ansi-blue-fg { color: #0550ae; } .ansi-bold { font-weight: 600; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


def _status(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#59636e")
    return f'<span class="status" style="background:{colour}">{html.escape(status)}</span>'


def _table(headers: list[str], rows: list[list], row_classes: list[str] | None = None, numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="num">{cell}</td>' if j in numeric else f"<td>{cell}</td>" for j, cell in enumerate(row))
        lines.append(f"<tr{cls}>{cells}</tr>")
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else html.escape(str(value if value is not None else ""))


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


def _img(figure: str) -> str:
    """A saved figure, linked relative to the run folder (the PNG stays one file, shared by both places it shows)."""
    return f'<img src="figures/{html.escape(figure)}" alt="{html.escape(figure)}">'


def _figures_of(notebook: str, figures: list[str]) -> list[str]:
    """The PNGs a notebook saved: their names start with its number (01_ingest -> 01_ingest_coverage.png)."""
    prefix = notebook.split("_", 1)[0] + "_"
    return [f for f in figures if f.startswith(prefix)]


def quality_section(quality: dict | None) -> str:
    """The run's quality_results rows, failures first."""
    if not quality or not quality.get("checks"):
        return '<p class="meta">No quality checks recorded for this ds (03_quality did not run or did not finish).</p>'
    checks = sorted(quality["checks"], key=lambda c: (c["status"] != "fail", c["severity"] != "error", c["check_name"]))
    rows, classes = [], []
    for c in checks:
        rows.append(
            [
                html.escape(c["check_name"]),
                html.escape(c["table_name"]),
                html.escape(c["severity"]),
                html.escape(c["status"]),
                _number(c["failed_rows"]),
                html.escape(c.get("details") or ""),
            ]
        )
        classes.append("" if c["status"] == "pass" else ("fail" if c["severity"] == "error" else "warn"))
    summary = f"{quality['checks_run']} checks, {quality['failed']} failed ({quality['failed_errors']} error-severity)"
    return f'<p class="meta">{summary}</p>' + _table(
        ["check", "table", "severity", "status", "failed rows", "details"], rows, classes, numeric={4}
    )


def write_run_report(run_dir: Path, record: dict) -> Path:
    """Write <run_dir>/index.html from the run record and the executed notebooks found next to it."""
    run_dir = Path(run_dir)
    params = record.get("parameters", {})
    span = (
        params.get("ds") if params.get("start_ds") in (None, "", params.get("ds")) else f"{params['start_ds']} .. {params['ds']}"
    )
    parts = [
        f"<h1>Run {html.escape(str(span))} {_status(record.get('status', '?'))}</h1>",
        f'<p class="meta">{html.escape(record.get("mode", "range"))} run, {record.get("market_days", "?")} market day(s); '
        f"finished {html.escape(str(record.get('finished_at', '')))} in {record.get('seconds', 0):,.0f}s; "
        f'<a href="../index.html">all runs</a></p>',
        "<h2>Quality</h2>",
        quality_section(record.get("quality")),
        "<h2>Notebooks</h2>",
    ]
    nb_rows = []
    for result in record.get("notebooks", []):
        name = result["notebook"]
        link = f'<a href="#{html.escape(name)}">{html.escape(name)}</a>' if result["status"] != "not run" else html.escape(name)
        nb_rows.append(
            [
                link,
                html.escape(result["status"]),
                f"{result.get('seconds') or 0:,.1f}",
                html.escape(result.get("error") or ("resumed from the previous attempt" if result.get("resumed") else "")),
            ]
        )
    nb_classes = ["" if r["status"] == "ok" else "fail" for r in record.get("notebooks", [])]
    parts.append(_table(["notebook", "status", "seconds", "note"], nb_rows, nb_classes, numeric={2}))

    tables = record.get("tables") or {}
    if tables:
        rows = [[html.escape(name), _number(t.get("run_rows")), _number(t.get("total_rows"))] for name, t in tables.items()]
        parts += ["<h2>Tables</h2>", _table(["table", "rows in this run's span", "rows in table"], rows, numeric={1, 2})]
    if record.get("calls"):
        calls = record["calls"]
        strategy = html.escape(" — " + calls["strategy"]) if calls.get("strategy") else ""
        parts.append(
            f'<p class="meta">API calls: {_number(calls.get("total"))} ({_number(calls.get("retries", 0))} retries){strategy}</p>'
        )

    figures = record.get("figures") or []
    if figures:
        thumbs = "".join(f'<a href="figures/{html.escape(f)}" title="{html.escape(f)}">{_img(f)}</a>' for f in figures)
        parts += ["<h2>Figures</h2>", f'<div class="figures">{thumbs}</div>']

    for result in record.get("notebooks", []):
        executed = run_dir / f"{result['notebook']}.ipynb"
        if result["status"] == "not run" or not executed.is_file():
            continue
        saved = "".join(
            f"<figure>{_img(f)}<figcaption>{html.escape(f)}</figcaption></figure>"
            for f in _figures_of(result["notebook"], figures)
        )
        parts.append(
            f'<section class="notebook" id="{html.escape(result["notebook"])}">{render_notebook(executed)}'
            f"{'<h3>Figures saved by this notebook</h3>' + saved if saved else ''}</section>"
        )

    versions = record.get("versions") or {}
    if versions:
        parts.append(
            '<p class="meta">' + ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in versions.items()) + "</p>"
        )
    path = run_dir / "index.html"
    path.write_text(_page(f"Run {span}", "\n".join(parts)))
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
    rows, classes = [], []
    for run_dir, record in load_records(runs_root):
        params = record.get("parameters", {})
        quality = record.get("quality") or {}
        notebooks = record.get("notebooks", [])
        ok = sum(1 for n in notebooks if n["status"] == "ok")
        target = f"{run_dir.name}/index.html" if (run_dir / "index.html").is_file() else f"{run_dir.name}/run.json"
        rows.append(
            [
                f'<a href="{html.escape(target)}">{html.escape(run_dir.name)}</a>',
                html.escape(str(params.get("start_ds", ""))),
                html.escape(str(params.get("ds", ""))),
                html.escape(record.get("mode", "range")),
                _status(record.get("status", "?")),
                f"{ok}/{len(notebooks)}",
                f"{quality.get('failed', '')}" if quality else "",
                f"{record.get('seconds') or 0:,.0f}",
                html.escape(str(record.get("finished_at", ""))),
            ]
        )
        classes.append("" if record.get("status") == "ok" else "fail")
    body = "<h1>Runs</h1>"
    if rows:
        body += f'<p class="meta">{len(rows)} run(s), newest first.</p>' + _table(
            ["run", "start_ds", "ds", "mode", "status", "notebooks ok", "quality checks failed", "seconds", "finished (UTC)"],
            rows,
            classes,
            numeric={7},
        )
    else:
        body += '<p class="meta">No runs yet: <code>make run</code> writes one.</p>'
    path = runs_root / "index.html"
    runs_root.mkdir(parents=True, exist_ok=True)
    path.write_text(_page("Runs", body))
    return path
