"""Batch runner: the notebooks through papermill, as one range run or one run per market day, with run records.

python -m lib.run -f params/local.yaml [-p name value]... [--ds D] [--start-ds S] [--notebooks 01_ingest ...]
python -m lib.run --per-day --start-ds S --ds D [--force]      # the scheduler's way; resumable
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lib.core.api_key import env_api_key
from lib.core.errors import ConfigError, WorkspaceError
from lib.core.paths import NOTEBOOKS_DIR, WORKSPACE, at_workspace
from lib.core.trading_days import is_trading_day, trading_days
from lib.presentation import report
from lib.settings.command_line import add_params_arguments, command_line_params
from lib.settings.config import WHOLE_MARKET_TICKERS, RunConfig
from lib.storage.catalog import SCHEMAS, WAP_TABLES, pyiceberg_catalog
from lib.storage.monthly import month_start
from lib.storage.session import ICEBERG_JAR_NAME
from lib.storage.wap import branch_for_run, inspect_hint

if TYPE_CHECKING:
    from lib.running.kernel import SharedKernel

NOTEBOOKS = ("01_ingest", "02_monthly_rollup", "03_quality", "04_trends", "05_forecast")
MASSIVE_URL = "https://api.massive.com"  # Massive, formerly Polygon.io (https://api.polygon.io still answers)
# Tables whose rows carry the run's ds (one partition per run) rather than the market date of a bar.
DS_TABLES = ("stock_tickers", "quality_results", "ingest_failures", "trend_summary", "anomalies", "forecasts", "forecast_metrics")
SECRET_NAME = re.compile(r"(^|_)(api_key|password|secret|token)$", re.IGNORECASE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.run", description=__doc__.split("\n")[0])
    add_params_arguments(parser)
    parser.add_argument("--ds", help="run date YYYY-MM-DD (overrides the params file)")
    parser.add_argument("--start-ds", help="first day of a range (overrides the params file)")
    parser.add_argument("--notebooks", nargs="+", help=f"a subset, in order (default: {' '.join(NOTEBOOKS)})")
    parser.add_argument(
        "--per-day", action="store_true", help="one run per market day of start_ds..ds, in order; complete days are skipped"
    )
    parser.add_argument("--force", action="store_true", help="with --per-day: re-run days whose record is complete")
    parser.add_argument(
        "--no-audit", action="store_true",
        help="write main directly (default: stage each run's market data on the branch audit_<ds>, published by 03_quality)",
    )  # fmt: skip
    parser.add_argument(
        "--kernel-per-notebook",
        action="store_true",
        help="a new kernel (and Spark session) for each notebook, as papermill alone runs them; slower. By default "
        "the notebooks of a run share one kernel, its namespace cleared before each",
    )
    parser.add_argument("--runs-root", help="where run records and runs/index.html go (default: runs, or run_dir's parent)")
    parser.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)  # tests: fixture notebooks
    args = parser.parse_args(argv)
    available = sorted(p.stem for p in at_workspace(args.notebooks_dir).glob("*.ipynb"))
    if args.notebooks is None:
        args.notebooks = [n for n in NOTEBOOKS if n in available] or available
    unknown = [n for n in args.notebooks if n not in available]
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; available in {args.notebooks_dir}: {available}")
    if args.force and not args.per_day:
        parser.error("--force only applies to --per-day (a range run always runs)")
    return args


def resolve_parameters(args: argparse.Namespace) -> dict:
    params = command_line_params(args.parameters_file, args.parameter)
    if args.ds:
        params["ds"] = args.ds
    if args.start_ds is not None:
        params["start_ds"] = args.start_ds
    # env_api_key refuses MASSIVE_API_KEY and POLYGON_API_KEY set to different keys: exit 2, no notebook started.
    if env_api_key() and not params.get("api_base_url"):
        # A key means the real API: the simulator is only the default for users without one.
        params["api_base_url"] = MASSIVE_URL
    explicit_run_dir = bool(params.get("run_dir"))
    if args.per_day and explicit_run_dir:
        raise SystemExit(
            f"--per-day writes one record per day, <runs root>/<ds>/, so it takes no run_dir (got {params['run_dir']!r}); "
            "drop run_dir and pass --runs-root DIR instead."
        )
    if not explicit_run_dir and args.runs_root:
        params["run_dir"] = str(Path(args.runs_root) / str(params.get("ds")))
    config = RunConfig.from_params(**params)  # refuses bad input before any notebook starts
    if not args.per_day:
        check_room(config)  # a range too big for this disk is refused now, not when the disk fills halfway
    params["ds"], params["start_ds"] = str(config.ds), str(config.start_ds)
    params["run_dir"] = config.run_dir
    if args.no_audit:
        params["wap_branch"] = ""
    elif "03_quality" not in args.notebooks and not params.get("wap_branch"):
        # No audit in this run, so nothing would publish a branch: the notebooks write main, as --no-audit.
        params["wap_branch"] = ""
    elif not params.get("wap_branch"):
        # Write-audit-publish by default: a branch named for the run (per day: for each day, see main_per_day).
        params["wap_branch"] = branch_for_run(config.ds, config.start_ds)
        args.default_branch = True
    return params


# Disk a range run needs per bar it stores: the tables keep about 170 bytes a bar (bench_scale: a year of the
# whole market, 2.7 million bars, is 436 MiB over raw_daily_bars, stock_prices, the monthly arrays and
# technical_indicators), and Spark's scratch (the fan-out's checkpoint, the shuffles) holds about as much again
# while the run lasts; twice that again is the margin.
BYTES_PER_BAR = 680


def range_bars(config: RunConfig) -> int:
    """Bars a range run of `config` stores at most: tickers (the symbols asked, the simulator's universe, or the
    whole US market) times the market days of the span."""
    tickers = len(config.symbols) or (config.simulator_tickers if config.uses_simulator else WHOLE_MARKET_TICKERS)
    return tickers * len(config.span_days)


def check_room(config: RunConfig, free_bytes: int | None = None) -> None:
    """Refuse a range run whose bars would not fit on the warehouse's disk, with runs that would, oldest first.

    Memory does not bound a range (the fan-out's partitions hold at most ingest.PARTITION_ROWS bars each and Spark
    spills the rest); a local disk does. S3 (Glue) has no such bound and is not checked.
    """
    import shutil

    if config.env != "local":
        return
    bars = range_bars(config)
    need = bars * BYTES_PER_BAR
    if free_bytes is None:
        probe = Path(config.warehouse).resolve()
        while not probe.exists():
            probe = probe.parent
        free_bytes = shutil.disk_usage(probe).free
    if need <= free_bytes:
        return
    days = config.span_days
    per_run = max(1, int(len(days) * free_bytes / need))
    chunks = [days[i : i + per_run] for i in range(0, len(days), per_run)]
    first = f"--start-ds {chunks[0][0]} --ds {chunks[0][-1]}"
    raise ConfigError(
        f"the range {config.start_ds}..{config.ds} is {len(days):,} market days of about {bars // len(days):,} tickers, "
        f"about {bars:,} bars: it needs about {need / 2**30:.1f} GiB of disk under {config.warehouse} and "
        f"{free_bytes / 2**30:.1f} GiB are free. Free some space, or split it into {len(chunks)} range runs of at most "
        f"{per_run:,} market days, oldest first, e.g. python -m lib.run {first}, then the next span (each run leaves "
        "the tables whole, so the later ones only add to them)."
    )


def audit_line(params: dict, notebooks: list[str], each_day: bool = False) -> str:
    """What the run does with its writes: staged on a branch for 03_quality, or straight to main (and why)."""
    if params.get("wap_branch"):
        branch = "audit_<ds> of each day" if each_day else params["wap_branch"]
        return (f"write-audit-publish: market data staged on the branch {branch}, "
                "published to main only if 03_quality passes (--no-audit writes main)")  # fmt: skip
    why = "--no-audit" if "03_quality" in notebooks else "no 03_quality in this run"
    return f"writing main directly ({why}): readers see this run's data before any audit"


def runs_root_for(args: argparse.Namespace, params: dict) -> Path:
    """The folder holding the run records and the runs index."""
    if args.runs_root:
        return at_workspace(args.runs_root)
    return at_workspace(params["run_dir"]).parent


def public_parameters(params: dict) -> dict:
    """The parameters as recorded: nothing that looks like a secret, no query string on URLs."""
    public = {}
    for name, value in params.items():
        if SECRET_NAME.search(name):
            continue
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            value = value.split("?", 1)[0]
        public[name] = value
    return public


# --- running notebooks ---------------------------------------------------------------------------------------------


def run_notebooks(
    params: dict,
    notebooks: list[str],
    notebooks_dir: Path = NOTEBOOKS_DIR,
    log=print,
    progress=None,
    done: list[dict] | None = None,
    kernel: SharedKernel | None = None,
) -> list[dict]:
    """Execute the notebooks in order with papermill, in one kernel; stop at the first failure.

    `done` holds results of notebooks that already succeeded for these parameters (a resumed run): they are kept.
    `kernel` is the kernel to run them in (the runner's, shared by the days of a per-day run); without one, a
    kernel for these notebooks alone.
    """
    import papermill

    if kernel is None:
        with new_kernel() as kernel:
            return run_notebooks(params, notebooks, notebooks_dir, log, progress, done, kernel)
    run_dir = at_workspace(params["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    results = list(done or [])
    for name in notebooks[len(results) :]:
        if progress is not None:
            progress.set_description(f"{params['ds']} {name}")
        started = time.monotonic()
        output = run_dir / f"{name}.ipynb"
        (run_dir / f"{name}.json").unlink(missing_ok=True)  # the step's report: this run's, or none
        source = Path(notebooks_dir) / f"{name}.ipynb"
        # Each notebook gets the parameters it declares; the full set was validated up front.
        declared = papermill.inspect_notebook(str(source))
        try:
            kernel.execute(
                source, output, {k: v for k, v in params.items() if k in declared}, progress_bar=False, log_output=False
            )
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            seconds = round(time.monotonic() - started, 1)
            results.append({"notebook": name, "status": "failed", "seconds": seconds, "error": _first_line(exc)})
            log(f"  {params['ds']} {name} FAILED after {seconds:.0f}s: {_first_line(exc)}")
            if progress is not None:
                progress.update(1)
            break
        seconds = round(time.monotonic() - started, 1)
        results.append({"notebook": name, "status": "ok", "seconds": seconds})
        log(f"  {params['ds']} {name} ok in {seconds:.0f}s")
        if progress is not None:
            progress.update(1)
    ran = {r["notebook"] for r in results}
    results += [{"notebook": n, "status": "not run", "seconds": None} for n in notebooks if n not in ran]
    return results


def new_kernel(fresh_each_notebook: bool = False) -> SharedKernel:
    """The kernel a run's notebooks share (lib.running.kernel): started in the repository, where the notebooks run."""
    # Here, not at the top: the kernel module loads papermill and nbclient (1.3 s of imports), which a run refused
    # for bad input, or --help, never needs.
    from lib.running.kernel import SharedKernel

    # The kernel's start-up notice (TCP on loopback, messages signed) is nothing a user can act on.
    return SharedKernel(WORKSPACE, ["--IPKernelApp.log_level=ERROR"], fresh_each_notebook=fresh_each_notebook)


def _first_line(exc: Exception) -> str:
    if getattr(exc, "ename", None):  # papermill's PapermillExecutionError: the exception raised in the cell
        return f"{exc.ename}: {exc.evalue}"[:400]
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip().startswith(("Exception", "Error")) or "Error:" in line:
            return line.strip()[:400]
    return text.splitlines()[-1][:400] if text else type(exc).__name__


# --- what a run produced -------------------------------------------------------------------------------------------


def _catalog(params: dict):
    """pyiceberg on the run's local catalog, or None when there is none to read (Glue, or nothing written yet)."""

    config = RunConfig.from_params(**dict(params, warehouse=str(at_workspace(params.get("warehouse") or "warehouse"))))
    if config.env != "local" or not (Path(config.warehouse) / "catalog.db").is_file():
        return None, config
    return pyiceberg_catalog(config), config


def table_rows(params: dict) -> dict[str, dict[str, int]]:
    """Rows per table: in the run's span (what this run wrote) and in the whole table. Read through pyiceberg."""

    cat, config = _catalog(params)
    if cat is None:
        return {}
    months = sorted({month_start(d) for d in config.span_days} | {month_start(config.ds)})
    span_filters = {
        "monthly_stock_prices": ("month_start", " or ".join(f"month_start = '{m}'" for m in months)),
        **{name: ("ds", f"ds = '{config.ds}'") for name in DS_TABLES},
        "corporate_actions": ("last_seen_ds", f"last_seen_ds = '{config.ds}'"),  # the actions this run saw
        "securities": ("security_id", "security_id IS NOT NULL"),  # rewritten whole by each run's 01_ingest
        # lib.stream's tables, by the span's UTC days (a session's minutes all fall on its UTC date).
        **{name: (column, f"{column} >= '{config.start_ds}T00:00:00+00:00' and "
                          f"{column} < '{config.ds + dt.timedelta(days=1)}T00:00:00+00:00'")
           for name, column in (("minute_bars", "window_start"), ("minute_bar_gaps", "last_window_end"))},
    }  # fmt: skip
    rows = {}
    for name in SCHEMAS:
        try:
            table = cat.load_table(f"{config.namespace}.{name}")
        except Exception:  # a table the run did not reach
            continue
        snapshot = table.current_snapshot()
        total = int(snapshot.summary.get("total-records", 0)) if snapshot and snapshot.summary else 0
        column, row_filter = span_filters.get(name, ("date", f"date >= '{config.start_ds}' and date <= '{config.ds}'"))
        in_span = table.scan(row_filter=row_filter, selected_fields=(column,)).to_arrow().num_rows if snapshot else 0
        rows[name] = {"run_rows": in_span, "total_rows": total}
    return rows


def table_counts(params: dict) -> dict[str, int]:
    """Rows per table, read without a JVM through pyiceberg."""
    return {name: counts["total_rows"] for name, counts in table_rows(params).items()}


def quality_line(quality: dict) -> str:
    """'15 checks: 14 passed, 1 warning (outliers on stock_prices: 5 rows), 0 errors' (a warning never fails a run)."""
    failed = [c for c in quality["checks"] if c["status"] == "fail"]

    def named(severity: str, label: str) -> str:
        found = [c for c in failed if c["severity"] == severity]
        what = ", ".join(f"{c['check_name']} on {c['table_name']}: {c['failed_rows']:,} rows" for c in found)
        return f"{len(found)} {label}{'' if len(found) == 1 else 's'}" + (f" ({what})" if what else "")

    passed = quality["checks_run"] - len(failed)
    return f"{quality['checks_run']} checks: {passed} passed, {named('warn', 'warning')}, {named('error', 'error')}"


def quality_summary(params: dict) -> dict | None:
    """This ds's rows of quality_results, as the report shows them."""
    cat, config = _catalog(params)
    if cat is None:
        return None
    try:
        table = cat.load_table(f"{config.namespace}.quality_results")
    except Exception:
        return None
    if table.current_snapshot() is None:
        return None
    frame = table.scan(row_filter=f"ds = '{config.ds}'").to_pandas()
    checks = [
        {
            "check_name": r.check_name,
            "table_name": r.table_name,
            "severity": r.severity,
            "status": r.status,
            "failed_rows": int(r.failed_rows),
            "details": r.details,
        }
        for r in frame.sort_values(["check_name", "table_name"]).itertuples()
    ]
    failed = [c for c in checks if c["status"] == "fail"]
    return {
        "checks_run": len(checks),
        "failed": len(failed),
        "failed_errors": sum(1 for c in failed if c["severity"] == "error"),
        "checks": checks,
    }


def current_snapshots(cat, namespace: str) -> dict:
    """Table name -> main's current pyiceberg Snapshot (None: a table main never wrote); tables not made are left out."""
    found = {}
    for name in SCHEMAS:
        try:
            found[name] = cat.load_table(f"{namespace}.{name}").current_snapshot()
        except Exception:  # a table the run did not reach
            continue
    return found


def main_snapshots(params: dict) -> dict[str, int | None]:
    """Table name -> the snapshot id of main after the run (None: a table main never wrote)."""
    cat, config = _catalog(params)
    if cat is None:
        return {}
    return {name: s.snapshot_id if s else None for name, s in current_snapshots(cat, config.namespace).items()}


def audit_state(params: dict, config: RunConfig, notebooks: list[dict]) -> dict | None:
    """The run's write-audit-publish outcome: its branch, whether main got it, and, when not, how to look at it."""
    if not config.wap_branch:
        return None

    cat, _ = _catalog(params)
    staged = []
    if cat is not None:
        for name in WAP_TABLES:
            try:
                table = cat.load_table(f"{config.namespace}.{name}")
            except Exception:
                continue
            if config.wap_branch in table.metadata.refs:
                staged.append(name)
    published = any(r["notebook"] == "03_quality" and r["status"] == "ok" for r in notebooks) and not staged
    state = {"branch": config.wap_branch, "published": published, "staged_tables": staged}
    if staged:
        state["inspect"] = inspect_hint(config, params_file="params/local.yaml")
    return state


def step_reports(run_dir: Path, notebooks: list[str]) -> dict[str, dict]:
    """What each step reported, as data: the `<step>.json` its notebook wrote into the run record (steps.save_report)."""
    reports = {}
    for name in notebooks:
        try:
            reports[name] = json.loads((Path(run_dir) / f"{name}.json").read_text())
        except (OSError, ValueError):  # a step that did not run, or failed before its report
            continue
    return reports


def ingest_calls(reports: dict[str, dict]) -> dict | None:
    """Calls made by 01_ingest, from its report."""
    ingest = reports.get("01_ingest")
    if not ingest or "calls" not in ingest:
        return None
    return {
        "total": int(ingest.get("total_calls", sum(ingest["calls"].values()))),
        "retries": int(sum(ingest.get("retries", {}).values())),
        "tickers": int(ingest.get("tickers", 0)),
        "strategy": ingest.get("reason", ""),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("pyspark", "pyiceberg", "papermill"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    match = re.search(r"runtime-[\d.]+_[\d.]+-([\d.]+)\.jar", ICEBERG_JAR_NAME)
    found["iceberg"] = match.group(1) if match else "unknown"
    return found


# --- run records ---------------------------------------------------------------------------------------------------


def load_record(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return None


def changed_parameters(record: dict | None, params: dict) -> list[str]:
    """Names whose value differs between a record and these parameters."""
    if not record:
        return []
    old, new = record.get("parameters", {}), _as_recorded(params)
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def _as_recorded(params: dict) -> dict:
    return json.loads(json.dumps(public_parameters(params), default=str))


def completed_notebooks(record: dict | None, params: dict, notebooks: list[str]) -> list[dict]:
    """Results of the leading notebooks that already succeeded for exactly these parameters (what a resume keeps)."""
    if not record or record.get("parameters") != _as_recorded(params):
        return []
    previous = {r["notebook"]: r for r in record.get("notebooks", [])}
    kept = []
    for name in notebooks:
        result = previous.get(name)
        if not result or result["status"] != "ok" or not (at_workspace(params["run_dir"]) / f"{name}.ipynb").is_file():
            break
        kept.append(dict(result, resumed=True))
    return kept


def is_complete(record: dict | None, params: dict, notebooks: list[str]) -> bool:
    """A run record is complete when it finished ok and holds every requested notebook, for the same parameters."""
    return bool(record) and record.get("status") == "ok" and len(completed_notebooks(record, params, notebooks)) == len(notebooks)


def write_record(params: dict, notebooks: list[dict], mode: str, started_at: str, seconds: float, status: str) -> dict:
    """run.json and index.html for one run; returns the record."""
    run_dir = at_workspace(params["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    config = RunConfig.from_params(**params)
    finished = status != "running"
    # Only what this run did: quality_results and the ingest summary may hold an earlier run's figures for this ds.
    succeeded = {r["notebook"] for r in notebooks if r["status"] == "ok"}
    ran = [r["notebook"] for r in notebooks if r["status"] in ("ok", "failed")]
    reports = step_reports(run_dir, ran) if finished else {}
    record = {
        "status": status,
        "mode": mode,
        "parameters": public_parameters(params),
        "market_days": len(config.span_days),
        "started_at": started_at,
        "finished_at": _utc_now() if finished else "",
        "seconds": round(seconds, 1),
        "notebooks": notebooks,
        "tables": table_rows(params) if finished else {},
        "calls": ingest_calls(reports) if finished else None,
        "quality": quality_summary(params) if finished and "03_quality" in succeeded else None,
        "figures": sorted(p.name for p in (run_dir / "figures").glob("*.png")),
        "snapshots": main_snapshots(params) if finished else {},
        "reports": reports,
        "audit": audit_state(params, config, notebooks) if finished else None,
        "versions": versions(),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, default=str))
    if finished:
        report.write_run_report(run_dir, record)
    return record


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclasses.dataclass
class Outcome:
    ds: str
    status: str  # ok, failed, skipped, not trading, not run, interrupted
    run_dir: Path | None = None
    note: str = ""


def run_once(
    params: dict, notebooks: list[str], notebooks_dir: Path, mode: str, log, progress, resume: bool, kernel=None
) -> dict:
    """One run (one ds or one range): a 'running' record first, then the notebooks, then the finished record."""
    run_dir = at_workspace(params["run_dir"])
    done = completed_notebooks(load_record(run_dir), params, notebooks) if resume else []
    if done:
        log(f"  {params['ds']}: resuming after {', '.join(r['notebook'] for r in done)} (succeeded in the last attempt)")
        if progress is not None:
            progress.update(len(done))
    started_at, started = _utc_now(), time.monotonic()
    write_record(params, done, mode, started_at, 0.0, "running")
    status = "failed"
    results = done
    try:
        results = run_notebooks(params, notebooks, notebooks_dir, log=log, progress=progress, done=done, kernel=kernel)
        status = "ok" if all(r["status"] == "ok" for r in results) else "failed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        record = write_record(params, results, mode, started_at, time.monotonic() - started, status)
    return record


def _progress(total: int):
    from tqdm import tqdm

    # disable=None: a bar on a terminal only; in a log file its redraws would bury the progress lines.
    return tqdm(total=total, unit="notebook", file=sys.stderr, dynamic_ncols=True, leave=True, disable=None)


def main_range(args: argparse.Namespace, params: dict) -> int:
    """One run over start_ds..ds: the fast path (range ingestion, one-pass rollup)."""
    source = params.get("api_base_url") or "the bundled simulator"
    run_dir = at_workspace(params["run_dir"])
    print(f"range run {params['start_ds']}..{params['ds']} against {source}; record in {run_dir}/")
    print(audit_line(params, args.notebooks))
    progress = _progress(len(args.notebooks))
    try:
        with new_kernel(args.kernel_per_notebook) as kernel:
            record = run_once(
                params, args.notebooks, at_workspace(args.notebooks_dir), "range", progress.write, progress, False, kernel
            )
    finally:
        progress.close()
    index = _write_index(runs_root_for(args, params))
    ok = record["status"] == "ok"
    print()
    print(f"{'succeeded' if ok else 'FAILED'} in {record['seconds']:.0f}s")
    for failure in (r for r in record["notebooks"] if r["status"] == "failed"):
        print(f"  {failure['notebook']} failed: {failure.get('error', '')}")
        print(f"  executed notebook with the failing cell: {run_dir / (failure['notebook'] + '.ipynb')}")
    not_run = [r["notebook"] for r in record["notebooks"] if r["status"] == "not run"]
    if not_run:
        print(f"  not run: {', '.join(not_run)}")
    audit = record.get("audit") or {}
    if audit.get("staged_tables"):
        print(f"  not published: {', '.join(audit['staged_tables'])} stay on the branch {audit['branch']}; main is unchanged")
        print(f"  {audit['inspect']}")
    if ok:  # after a failure the span's rows may be an earlier run's: run.json keeps them, the summary claims none
        for name, counts in record["tables"].items():
            print(f"  {name:<22} {counts['total_rows']:>10,} rows ({counts['run_rows']:,} in this run's span)")
    if record["quality"]:  # set only when 03_quality succeeded in this run
        print(f"  quality: {quality_line(record['quality'])}")
    print(f"  figures: {len(record['figures'])} PNG in {run_dir / 'figures'}")
    print(f"  executed notebooks: {run_dir}/*.ipynb (open them in `make lab`)")
    print(f"  report: {run_dir / 'index.html'}   all runs: {index}")
    return 0 if ok else 1


def main_per_day(args: argparse.Namespace, params: dict) -> int:
    """One run per market day of start_ds..ds, in order; skips complete days, stops at the first failed day."""
    start, end = dt.date.fromisoformat(params["start_ds"]), dt.date.fromisoformat(params["ds"])
    runs_root = runs_root_for(args, params)
    calendar_days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    market_days = [d for d in calendar_days if is_trading_day(d)]
    source = params.get("api_base_url") or "the bundled simulator"
    print(
        f"per-day runs {start}..{end}: {len(market_days)} market day(s) of {len(calendar_days)} against {source}; "
        f"records in {runs_root}/<ds>/"
    )
    print(audit_line(params, args.notebooks, each_day=getattr(args, "default_branch", False)))
    outcomes: list[Outcome] = []
    progress = _progress(len(market_days) * len(args.notebooks))
    failed = False
    kernel = new_kernel(args.kernel_per_notebook)  # one kernel for every day's notebooks (a new one after a failure)
    try:
        for day in calendar_days:
            ds = day.isoformat()
            if not is_trading_day(day):
                progress.write(f"  {ds} ({day:%A}): not a NYSE trading day, skipped")
                outcomes.append(Outcome(ds, "not trading"))
                continue
            day_params = dict(params, ds=ds, start_ds=ds, run_dir=str(runs_root / ds))
            if getattr(args, "default_branch", False):
                day_params["wap_branch"] = branch_for_run(day, day)
            run_dir = at_workspace(day_params["run_dir"])
            if failed:
                outcomes.append(Outcome(ds, "not run", run_dir))
                continue
            previous = load_record(run_dir)
            changed = changed_parameters(previous, day_params)
            if changed and previous.get("status") == "ok" and not args.force:
                progress.write(f"  {ds}: parameters {changed} differ from the record's, re-running")
            if not args.force and is_complete(previous, day_params, args.notebooks):
                progress.write(f"  {ds}: record complete in {run_dir}, skipped (--force re-runs it)")
                progress.update(len(args.notebooks))
                outcomes.append(Outcome(ds, "skipped", run_dir))
                continue
            try:
                record = run_once(
                    day_params,
                    args.notebooks,
                    at_workspace(args.notebooks_dir),
                    "per-day",
                    progress.write,
                    progress,
                    resume=not args.force,
                    kernel=kernel,
                )
            except KeyboardInterrupt:
                outcomes.append(Outcome(ds, "interrupted", run_dir))
                raise
            if record["status"] == "ok":
                outcomes.append(Outcome(ds, "ok", run_dir))
            else:
                failed = True
                failure = next(r for r in record["notebooks"] if r["status"] == "failed")
                outcomes.append(Outcome(ds, "failed", run_dir, f"{failure['notebook']}: {failure.get('error', '')}"))
    finally:
        kernel.shutdown()
        progress.close()
        index = _write_index(runs_root)
    print()
    print(per_day_summary(outcomes, runs_root, index))
    return 1 if failed else 0


def per_day_summary(outcomes: list[Outcome], runs_root: Path, index: Path) -> str:
    count = {s: sum(1 for o in outcomes if o.status == s) for s in ("ok", "skipped", "not trading", "failed", "not run")}
    lines = [
        f"{'FAILED' if count['failed'] else 'succeeded'}: {count['ok']} day(s) done, {count['skipped']} skipped "
        f"(record complete), {count['not trading']} not trading day(s), {count['failed']} failed, "
        f"{count['not run']} not run"
    ]
    for outcome in outcomes:
        if outcome.status == "failed":
            lines.append(f"  failed: {outcome.ds} ({outcome.note}); report: {outcome.run_dir / 'index.html'}")
    not_run = [o.ds for o in outcomes if o.status == "not run"]
    if not_run:
        lines.append(f"  not run: {not_run[0]}..{not_run[-1]}; run the same command again to resume from the failed day")
    lines.append(f"  records: {runs_root}/<ds>/ (run.json, executed notebooks, figures, index.html)")
    lines.append(f"  all runs: {index}")
    return "\n".join(lines)


def _write_index(runs_root: Path) -> Path:
    return report.write_runs_index(runs_root)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = resolve_parameters(args)
    except WorkspaceError as exc:  # bad input: say what was wrong and what to do, without a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not trading_days(dt.date.fromisoformat(params["start_ds"]), dt.date.fromisoformat(params["ds"])):
        print(f"no NYSE trading day in {params['start_ds']}..{params['ds']}: nothing to fetch (an empty run); "
              "the notebooks still run and record that")  # fmt: skip
    return main_per_day(args, params) if args.per_day else main_range(args, params)


if __name__ == "__main__":
    sys.exit(main())
