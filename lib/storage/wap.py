"""Write, audit, publish: a run's market data staged on an Iceberg branch, audited there, then published to main.

With the parameter `wap_branch` set (the batch runner sets `audit_<ds>`), 01_ingest and 02_monthly_rollup write the
tables of market data (lib.storage.catalog.WAP_TABLES) on that branch, and 02 reads 01's rows from it; 03_quality audits the
branch and, only when every error-severity check passed, `publish` moves each table's main to it, drops the branch
and tags main `run-<ds>`. Readers (04_trends, lib.prices, the dashboard, DuckDB) read main, so they never see data
the gate has not passed. When the gate fails main is untouched and the branch stays; `python -m lib.wap` (its command line,
lib/wap.py) shows it, publishes it after a human decision, or drops it:

    python -m lib.wap status  --branch audit_2024_03_28 [-f params/local.yaml] [-p NAME VALUE ...]
    python -m lib.wap publish --branch audit_2024_03_28 [--ds 2024-03-28] [--start-ds S] [-f ...]
    python -m lib.wap drop    --branch audit_2024_03_28 [-f ...]

Publishing several tables is not one transaction. Tables are published one at a time in WAP_TABLES order, each by
an atomic fast-forward of main followed by dropping its branch, so a table whose branch is gone is published; a
publish that stopped half-way (a killed process) is completed by publishing again, which skips those tables. When
main moved since the branch was made (another run published first), the fast-forward cannot apply: the run's
writes are replayed on the new main instead (the branch is re-pointed at main, the staged rows written again with the
same idempotent replace or merge, the monthly arrays recomputed from stock_prices), then fast-forwarded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib.core.errors import CommitConflictError
from lib.settings.config import RunConfig
from lib.storage import catalog, monthly

# A replay that lost the race again (a third run published meanwhile) is tried again, this many times in all.
PUBLISH_ATTEMPTS = 5
# Test hook: after publishing this table, print a line and wait, so a test can kill the process between two tables.
PAUSE_AFTER_ENV = "LIB_WAP_PAUSE_AFTER_TABLE"
BRANCH_RE = re.compile(r"^audit_(\d{4})_(\d{2})_(\d{2})(?:_(\d{4})_(\d{2})_(\d{2}))?$")


def branch_for_run(ds: dt.date, start_ds: dt.date | None = None) -> str:
    """The audit branch named for a run: audit_2024_03_28, or audit_2024_01_02_2024_03_28 for a range."""
    start_ds = start_ds or ds
    if start_ds == ds:
        return f"audit_{ds:%Y_%m_%d}"
    return f"audit_{start_ds:%Y_%m_%d}_{ds:%Y_%m_%d}"


def span_of_branch(branch: str) -> tuple[dt.date, dt.date] | None:
    """(start_ds, ds) of a branch named by branch_for_run; None for any other name."""
    match = BRANCH_RE.match(branch)
    if not match:
        return None
    parts = [int(p) for p in match.groups() if p is not None]
    first = dt.date(*parts[:3])
    return (first, dt.date(*parts[3:])) if len(parts) == 6 else (first, first)


def on_main(config: RunConfig) -> RunConfig:
    """The config of a reader: main of every table, whatever wap_branch says (04_trends and after read main)."""
    return dataclasses.replace(config, wap_branch="") if config.wap_branch else config


def staged_tables(spark: SparkSession, config: RunConfig) -> list[str]:
    """The tables of market data that still hold the run's branch (not yet published), in publishing order."""
    if not config.wap_branch:
        return []
    return [name for name in catalog.WAP_TABLES if catalog.branch_exists(spark, config, name, config.wap_branch)]


def rebuild_months(spark: SparkSession, config: RunConfig) -> list[dt.date]:
    """Apply the span's market days from stock_prices to the monthly arrays, in one atomic overwrite of their months.

    Exact and idempotent: a month's arrays are recomputed from the rows they replace and the span's prices, so it
    is both 02_monthly_rollup's write and the replay of that write on a main another run has moved. Returns the months.
    """
    days = config.span_days
    months = sorted({monthly.month_start(d) for d in days})
    if not days:
        return months
    prices = catalog.read_table(spark, config, "stock_prices").filter(
        F.col("date").between(F.lit(config.start_ds), F.lit(config.ds))
    )
    existing = catalog.read_table(spark, config, "monthly_stock_prices").filter(F.col("month_start").isin(months))
    # Checkpoint: the new arrays are computed from the table they replace.
    updated = monthly.apply_days(prices, existing, days).localCheckpoint(eager=True)
    catalog.overwrite_partitions(config, "monthly_stock_prices", updated)
    return months


def _staged_rows(spark: SparkSession, config: RunConfig, name: str) -> DataFrame | None:
    """The rows the run wrote on its branch (read before the branch is re-pointed; None: recomputed instead)."""
    table = catalog.read_table(spark, config, name)
    if name == "stock_tickers":
        rows = table.filter(F.col("ds") == F.lit(config.ds))
    elif name in ("raw_daily_bars", "stock_prices"):
        rows = table.filter(F.col("date").between(F.lit(config.start_ds), F.lit(config.ds)))
    elif name == "corporate_actions":
        rows = table.filter(F.col("last_seen_ds") == F.lit(config.ds))  # the actions the run saw
    else:
        return None
    return rows.localCheckpoint(eager=True)


def _write_staged(spark: SparkSession, config: RunConfig, name: str, rows: DataFrame | None) -> None:
    if name == "stock_tickers":
        catalog.replace_rows(spark, config, name, rows, "ds", config.ds, config.ds)
    elif name in ("raw_daily_bars", "stock_prices"):
        catalog.replace_rows(spark, config, name, rows, "date", config.start_ds, config.ds)
    elif name == "corporate_actions":
        catalog.merge_corporate_actions(spark, config, rows, config.ds)
    else:
        rebuild_months(spark, config)


def _replay(spark: SparkSession, config: RunConfig, name: str) -> None:
    """Re-point the branch at main's current snapshot and write the run's changes on it again."""
    rows = _staged_rows(spark, config, name)
    main = catalog.refs(spark, config, name)["main"][1]
    catalog.rebase_branch(spark, config, name, config.wap_branch, main)
    _write_staged(spark, config, name, rows)


def _pause_for_tests(name: str) -> None:
    if os.environ.get(PAUSE_AFTER_ENV) == name:
        print(f"lib.wap: published {name}, pausing ({PAUSE_AFTER_ENV})", flush=True)
        time.sleep(3600)


@dataclasses.dataclass
class PublishReport:
    branch: str
    tables: dict[str, str]  # table -> how it reached main: fast-forward, replayed on a newer main, already on main
    snapshots: dict[str, int | None]  # table -> main's snapshot after the publish
    tag: str
    maintenance: dict[str, dict] | None = None  # table -> catalog.maintain_tables' counts; None: not maintained

    def summary(self) -> str:
        if not self.branch:
            text = f"no audit branch (wap_branch is empty): the run wrote main directly; tagged {self.tag}"
        else:
            how = ", ".join(f"{name}: {way}" for name, way in self.tables.items())
            text = f"published {self.branch} to main ({how}); branch removed; tagged {self.tag}"
        return text + (f"; maintenance: {maintenance_summary(self.maintenance)}" if self.maintenance is not None else "")


def maintenance_summary(maintenance: dict[str, dict]) -> str:
    """One short clause for catalog.maintain_tables' counts: what was expired, compacted and retired, what was left."""
    total = lambda key: sum(counts[key] for counts in maintenance.values())  # noqa: E731
    done = []
    if total("expired_snapshots"):
        tables = sum(bool(counts["expired_snapshots"]) for counts in maintenance.values())
        done.append(f"{total('expired_snapshots')} snapshots expired in {_tables(tables)}")
    if total("rewritten_data_files"):
        done.append(f"{total('rewritten_data_files')} small files compacted into {total('added_data_files')}")
    retired = sum(len(counts["retired_tags"]) for counts in maintenance.values())
    if retired:
        done.append(f"{retired} tags retired")
    held = [name for name, counts in maintenance.items() if counts["kept_for_branches"]]
    if held:
        branches = sorted({branch for name in held for branch in maintenance[name]["kept_for_branches"]})
        done.append(f"{_tables(len(held))} not expired while {', '.join(branches)} exists")
    return ", ".join(done) or f"nothing due in {_tables(len(maintenance))}"


def _tables(count: int) -> str:
    return f"{count} table" if count == 1 else f"{count} tables"


def publish(spark: SparkSession, config: RunConfig, keep_snapshots: int | None = 10) -> PublishReport:
    """Publish the run's branch to main, table by table (idempotent: what is published already is skipped), maintain
    every table of the namespace, then tag every table of market data run-<ds>, kept config.keep_run_tags_days days.

    With an empty wap_branch there is nothing to publish: main is maintained and tagged. The gate is the caller's
    (steps.publish), so a failed gate never gets here and its branch stays. Maintenance (catalog.maintain_tables: the
    months of the run's days compacted, tags past their age retired, snapshots beyond main's last `keep_snapshots`
    expired once enough are due) comes before the tag, so the tag holds the compacted snapshot, not the small files
    it replaced. keep_snapshots None leaves every table as it is.
    """
    branch = config.wap_branch
    tables: dict[str, str] = {}
    for name in catalog.WAP_TABLES if branch else ():
        if not catalog.branch_exists(spark, config, name, branch):
            tables[name] = "already on main"
            continue
        way = "fast-forward"
        for _ in range(PUBLISH_ATTEMPTS):
            if catalog.fast_forward(spark, config, name, branch):
                break
            _replay(spark, config, name)
            way = "replayed on a newer main"
        else:
            raise CommitConflictError(name, f"main kept moving while {branch} was replayed {PUBLISH_ATTEMPTS} times")
        catalog.drop_branch(spark, config, name, branch)
        tables[name] = way
        _pause_for_tests(name)
    maintenance = None
    if keep_snapshots is not None:
        maintenance = catalog.maintain_tables(spark, config, keep_last=keep_snapshots, days=config.span_days)
    tag = catalog.run_tag(config.ds)
    snapshots = {name: catalog.tag_main(spark, config, name, tag, config.keep_run_tags_days) for name in catalog.WAP_TABLES}
    return PublishReport(branch, tables, snapshots, tag, maintenance)


def inspect_hint(config: RunConfig, params_file: str = "params/local.yaml") -> str:
    """How to look at an unpublished branch, publish it anyway, or drop it: the commands, for this run's names."""
    branch, table = config.wap_branch, config.table("stock_prices")
    span = f" --ds {config.ds}" + (f" --start-ds {config.start_ds}" if config.start_ds != config.ds else "")
    where = f" -f {params_file} -p warehouse {config.warehouse} -p namespace {config.namespace}"
    return (
        f"main of every table of market data is unchanged; this run's data stays on the Iceberg branch {branch!r} "
        f"for inspection. Spark: SELECT * FROM {table} VERSION AS OF '{branch}' (or FROM {table}.branch_{branch}); "
        f"pyiceberg: t = catalog.load_table('{config.namespace}.stock_prices'); "
        f"t.scan(snapshot_id=t.snapshot_by_name('{branch}').snapshot_id); "
        f"DuckDB and snapshot ids: python -m lib.wap status --branch {branch}{where}. "
        f"After a human decision, publish it anyway: python -m lib.wap publish --branch {branch}{span}{where}; "
        f"or drop it: python -m lib.wap drop --branch {branch}{where}"
    )


def branch_status(spark: SparkSession, config: RunConfig) -> list[dict]:
    """Per table of market data: the branch's snapshot, main's, and the metadata file DuckDB's iceberg_scan reads."""
    rows = []
    for name in catalog.WAP_TABLES:
        found = catalog.refs(spark, config, name)
        metadata = (
            spark.table(catalog.table_identifier(config, name, "metadata_log_entries"))
            .orderBy(F.col("timestamp").desc()).select("file").first()
        )  # fmt: skip
        rows.append({
            "table": name,
            "branch_snapshot": found.get(config.wap_branch, (None, None))[1],
            "main_snapshot": found.get("main", (None, None))[1],
            "metadata_file": metadata.file if metadata else None,
        })  # fmt: skip
    return rows


def drop(spark: SparkSession, config: RunConfig) -> list[str]:
    """Remove the run's branch from every table (main is not touched); returns the tables that had it."""
    had = staged_tables(spark, config)
    for name in had:
        catalog.drop_branch(spark, config, name, config.wap_branch)
    return had
