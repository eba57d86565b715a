"""Batch runner: the four notebooks through papermill, in order, for one ds or a start_ds..ds range.

    python -m lib.run -f params/local.yaml [-p name value]... [--ds D] [--start-ds S] [--notebooks 01_ingest ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from lib.config import RunConfig, load_params_file
from lib.secrets import ENV_VAR

NOTEBOOKS = ("01_ingest", "02_monthly_rollup", "03_quality", "04_trends")
REPO = Path(__file__).resolve().parent.parent
POLYGON_URL = "https://api.polygon.io"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.run", description=__doc__.split("\n")[0])
    parser.add_argument("-f", "--parameters-file", default="params/local.yaml", help="papermill params YAML")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--ds", help="run date YYYY-MM-DD (overrides the params file)")
    parser.add_argument("--start-ds", help="first day of a range (overrides the params file)")
    parser.add_argument("--notebooks", nargs="+", choices=NOTEBOOKS, default=list(NOTEBOOKS))
    return parser.parse_args(argv)


def resolve_parameters(args: argparse.Namespace) -> dict:
    params = load_params_file(args.parameters_file)
    for name, value in args.parameter:
        params[name] = yaml.safe_load(value) if value != "" else ""
    if args.ds:
        params["ds"] = args.ds
    if args.start_ds is not None:
        params["start_ds"] = args.start_ds
    if os.environ.get(ENV_VAR) and not params.get("api_base_url"):
        # A key means the real API: the simulator is only the default for users without one.
        params["api_base_url"] = POLYGON_URL
    config = RunConfig.from_params(**params)  # refuses bad input before any notebook starts
    params["ds"], params["start_ds"] = str(config.ds), str(config.start_ds)
    params["run_dir"] = config.run_dir
    return params


def run_notebooks(params: dict, notebooks: list[str], log=print) -> list[dict]:
    """Execute the notebooks in order with papermill; stop at the first failure."""
    import papermill

    run_dir = Path(params["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in notebooks:
        started = time.monotonic()
        output = run_dir / f"{name}.ipynb"
        source = REPO / "notebooks" / f"{name}.ipynb"
        # Each notebook gets the parameters it declares; the full set was validated up front.
        declared = papermill.inspect_notebook(str(source))
        log(f"[{name}] running -> {output}")
        try:
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters={k: v for k, v in params.items() if k in declared},
                cwd=str(REPO),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
            )
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            results.append({"notebook": name, "status": "failed", "seconds": time.monotonic() - started,
                            "error": _first_line(exc)})  # fmt: skip
            log(f"[{name}] FAILED after {time.monotonic() - started:.0f}s: {_first_line(exc)}")
            break
        results.append({"notebook": name, "status": "ok", "seconds": round(time.monotonic() - started, 1)})
        log(f"[{name}] ok in {time.monotonic() - started:.0f}s")
    return results


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip().startswith(("Exception", "Error")) or "Error:" in line:
            return line.strip()[:400]
    return text.splitlines()[-1][:400] if text else type(exc).__name__


def table_counts(params: dict) -> dict[str, int]:
    """Rows per table, read without a JVM through pyiceberg."""
    from lib.catalog import SCHEMAS, pyiceberg_catalog

    config = RunConfig.from_params(**params)
    if config.env != "local":
        return {}
    cat = pyiceberg_catalog(config)
    counts = {}
    for name in SCHEMAS:
        try:
            counts[name] = len(cat.load_table(f"{config.namespace}.{name}").scan().to_arrow())
        except Exception:  # a table the run did not reach yet
            counts[name] = 0
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = resolve_parameters(args)
    source = params.get("api_base_url") or "the bundled simulator"
    print(f"run {params['start_ds']}..{params['ds']} against {source}; record in {params['run_dir']}/")
    started = time.monotonic()
    results = run_notebooks(params, args.notebooks)
    ok = len(results) == len(args.notebooks) and all(r["status"] == "ok" for r in results)
    run_dir = Path(params["run_dir"])
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    counts = table_counts(params)
    record = {"parameters": params, "notebooks": results, "tables": counts, "figures": figures,
              "status": "ok" if ok else "failed", "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, default=str))
    print()
    print(f"{'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s")
    for name, count in counts.items():
        print(f"  {name:<22} {count:>10,} rows")
    print(f"  figures: {len(figures)} PNG in {run_dir / 'figures'}")
    print(f"  executed notebooks: {run_dir}/*.ipynb (open them in `make lab`)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
