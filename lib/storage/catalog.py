"""The one module that knows catalog names, warehouse locations, table schemas and write modes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib.core.errors import CommitConflictError
from lib.settings.config import RunConfig
from lib.storage.session import renew_catalog_connections

R = TypeVar("R")

PRICE_FIELDS = [
    T.StructField("symbol", T.StringType()),
    T.StructField("date", T.DateType()),
    T.StructField("open", T.DoubleType()),
    T.StructField("high", T.DoubleType()),
    T.StructField("low", T.DoubleType()),
    T.StructField("close", T.DoubleType()),
    T.StructField("volume", T.DoubleType()),
    T.StructField("vwap", T.DoubleType()),
    T.StructField("transactions", T.LongType()),
]

# A bar as the API gives it, before the run ties it to a security (stock_prices adds security_id).
BAR_SCHEMA = T.StructType(PRICE_FIELDS)

SCHEMAS: dict[str, T.StructType] = {
    "stock_tickers": T.StructType(
        [T.StructField(name, T.StringType()) for name in ("ticker", "name", "market", "locale", "primary_exchange", "type")]
        + [T.StructField("active", T.BooleanType())]
        + [
            T.StructField(name, T.StringType())
            for name in ("currency_name", "cik", "composite_figi", "share_class_figi", "last_updated_utc")
        ]
        + [T.StructField("ds", T.DateType())]
    ),
    "raw_daily_bars": T.StructType(
        PRICE_FIELDS
        + [
            T.StructField("ds", T.DateType()),
            T.StructField("endpoint", T.StringType()),
            T.StructField("received_at", T.TimestampType()),
        ]
    ),
    # security_id: the security that traded under symbol on date (lib.ingestion.securities); symbol stays the ticker.
    "stock_prices": T.StructType(PRICE_FIELDS + [T.StructField("security_id", T.StringType())]),
    # One row per security and ticker period (lib.ingestion.securities): valid_to is the first day no longer under the
    # ticker (null while held); valid_from the first day under it (null: since a listing the list endpoint does not date).
    "securities": T.StructType(
        [T.StructField("security_id", T.StringType()), T.StructField("ticker", T.StringType()),
         T.StructField("valid_from", T.DateType()), T.StructField("valid_to", T.DateType())]
        + [T.StructField(name, T.StringType()) for name in ("name", "cik", "composite_figi", "share_class_figi")]
        + [T.StructField("delisted_date", T.DateType())]
    ),  # fmt: skip
    "monthly_stock_prices": T.StructType(
        [
            T.StructField("symbol", T.StringType()),
            T.StructField("metric_name", T.StringType()),
            T.StructField("metric_array", T.ArrayType(T.DoubleType())),
            T.StructField("month_start", T.DateType()),
            T.StructField("from_date", T.DateType()),
        ]
    ),
    "quality_results": T.StructType(
        [
            T.StructField("ds", T.DateType()),
            T.StructField("table_name", T.StringType()),
            T.StructField("check_name", T.StringType()),
            T.StructField("severity", T.StringType()),
            T.StructField("status", T.StringType()),
            T.StructField("failed_rows", T.LongType()),
            T.StructField("details", T.StringType()),
            T.StructField("checked_at", T.TimestampType()),
        ]
    ),
    "ingest_failures": T.StructType(
        [
            T.StructField("ds", T.DateType()),
            T.StructField("symbol", T.StringType()),
            T.StructField("endpoint", T.StringType()),
            T.StructField("http_status", T.IntegerType()),
            T.StructField("error", T.StringType()),
            T.StructField("attempts", T.IntegerType()),
            T.StructField("failed_at", T.TimestampType()),
        ]
    ),
    # One row per action, keyed by the API's id (source_id); see merge_corporate_actions.
    "corporate_actions": T.StructType(
        [
            T.StructField("symbol", T.StringType()),
            T.StructField("action_type", T.StringType()),  # split or dividend
            T.StructField("ex_date", T.DateType()),
            T.StructField("split_from", T.DoubleType()),
            T.StructField("split_to", T.DoubleType()),
            T.StructField("cash_amount", T.DoubleType()),
            T.StructField("currency", T.StringType()),
            T.StructField("declaration_date", T.DateType()),
            T.StructField("record_date", T.DateType()),
            T.StructField("pay_date", T.DateType()),
            T.StructField("source_id", T.StringType()),
            T.StructField("first_seen_ds", T.DateType()),
            T.StructField("last_seen_ds", T.DateType()),
        ]
    ),
    # The numbers behind 04_trends' figures: one row per symbol per ds (a re-run replaces that ds).
    "trend_summary": T.StructType(
        [T.StructField("ds", T.DateType()), T.StructField("symbol", T.StringType()), T.StructField("adjust", T.StringType()),
         T.StructField("start_date", T.DateType()), T.StructField("end_date", T.DateType()),
         T.StructField("bars", T.LongType())]
        + [T.StructField(name, T.DoubleType())
           for name in ("first_close", "last_close", "total_return", "annualized_volatility", "max_drawdown")]
    ),  # fmt: skip
    # TA-Lib's definitions on the split-adjusted series: one row per symbol and trading day.
    # With the indicators' fold state after the row's bar (lib.analytics.indicators.STATE_COLUMNS): the next day
    # continues from it rather than from the symbol's first bar.
    "technical_indicators": T.StructType(
        [T.StructField("symbol", T.StringType()), T.StructField("date", T.DateType())]
        + [T.StructField(name, T.DoubleType())
           for name in ("rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14", "obv")]
        + [T.StructField("bar_number", T.IntegerType())]
        + [T.StructField(name, T.DoubleType())
           for name in ("wilder_gain", "wilder_loss", "wilder_atr", "ema_fast", "ema_slow", "ema_signal")]
    ),  # fmt: skip
    # One row per symbol, date and kind flagged (return, gap, volume, ...).
    "anomalies": T.StructType(
        [T.StructField("ds", T.DateType()), T.StructField("symbol", T.StringType()), T.StructField("date", T.DateType()),
         T.StructField("kind", T.StringType())]
        + [T.StructField(name, T.DoubleType()) for name in ("value", "score", "threshold")]
    ),  # fmt: skip
    # One row per symbol, model, origin_date and horizon (trading days); actual_close is null until known.
    "forecasts": T.StructType(
        [T.StructField("ds", T.DateType()), T.StructField("symbol", T.StringType()), T.StructField("model", T.StringType()),
         T.StructField("origin_date", T.DateType()), T.StructField("target_date", T.DateType()),
         T.StructField("horizon", T.IntegerType()), T.StructField("predicted_close", T.DoubleType()),
         T.StructField("actual_close", T.DoubleType())]
    ),  # fmt: skip
    # One row per model and horizon per ds: the scores of that run's forecasts whose actual is known.
    "forecast_metrics": T.StructType(
        [T.StructField("ds", T.DateType()), T.StructField("model", T.StringType()), T.StructField("horizon", T.IntegerType()),
         T.StructField("n", T.LongType())]
        + [T.StructField(name, T.DoubleType())
           for name in ("mae", "rmse", "mape", "directional_accuracy", "skill_vs_naive")]
    ),  # fmt: skip
}

# The tables built from stock_prices carry the security each row's series belongs to (analyses run per security).
IDENTIFIED = ("stock_prices", "trend_summary", "technical_indicators", "anomalies", "forecasts")
for _name in IDENTIFIED[1:]:
    SCHEMAS[_name] = T.StructType(SCHEMAS[_name].fields + [T.StructField("security_id", T.StringType())])

# Partitioning. The daily tables of bars by the month of their date: twenty years are 240 partitions, not 5,032, and a
# day's write rewrites its month-to-date (replace_rows carries the month's other days along: about 230,000 rows for the
# whole market). Warehouses made with day partitions are evolved on their next run (ensure_tables); their old day files
# go as their months are rewritten. The monthly arrays by month, sorted by symbol so one month is a few large files.
PARTITIONING = {
    "stock_tickers": "ds",
    "raw_daily_bars": "months(date)",
    "stock_prices": "months(date)",
    # A few rows per security: one small unpartitioned table, rewritten whole by each run's 01_ingest.
    "securities": None,
    "monthly_stock_prices": "month_start",
    "quality_results": "ds",
    "ingest_failures": "ds",
    # Tens of thousands of rows over decades: one unpartitioned table, merged by id, read whole or by symbol.
    "corporate_actions": None,
    "trend_summary": "ds",
    # By month too (pyiceberg appends to a months() partition through the pyiceberg-core extension, a dependency).
    "technical_indicators": "months(date)",
    # Few rows a day: unpartitioned, replaced by date range (anomalies) or origin range (forecasts).
    "anomalies": None,
    "forecasts": None,
    "forecast_metrics": "ds",
}
# The tables partitioned by the month of a date column, and that column: replace_rows replaces their whole months.
MONTH_PARTITIONED = {
    name: spec.removeprefix("months(").removesuffix(")") for name, spec in PARTITIONING.items() if str(spec).startswith("months(")
}
WRITE_ORDER = {
    "stock_prices": "symbol",
    "raw_daily_bars": "symbol",
    "monthly_stock_prices": "symbol, metric_name",
    "corporate_actions": "symbol, ex_date",
    "technical_indicators": "symbol",
    "anomalies": "date, symbol",
    "forecasts": "symbol, model, origin_date",
}
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # Daily jobs commit often: keep metadata files from piling up.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}
# Per table, on top of TABLE_PROPERTIES. The monthly arrays are read a few symbols at a time without Spark
# (lib.storage.lake_reader): row groups of about 1 MiB (≈10,000 symbol-metric rows, sorted by symbol) let a reader skip to a
# symbol's rows by their statistics, where Parquet's default 128 MiB makes a whole month's file one row group.
EXTRA_PROPERTIES = {"monthly_stock_prices": {"write.parquet.row-group-size-bytes": str(1 << 20)}}


# Real-time minute bars (lib.stream): one row per symbol and window_start (UTC instants), the latest received; and the
# gaps of the feed (it does not replay what was sent while the stream was away), one row per gap.
SCHEMAS["minute_bars"] = T.StructType(
    [T.StructField("symbol", T.StringType()), T.StructField("window_start", T.TimestampType()),
     T.StructField("window_end", T.TimestampType())]
    + [T.StructField(name, T.DoubleType()) for name in ("open", "high", "low", "close", "volume", "vwap")]
    + [T.StructField("transactions", T.LongType()), T.StructField("received_at", T.TimestampType())]
)  # fmt: skip
SCHEMAS["minute_bar_gaps"] = T.StructType(
    [T.StructField("gap_id", T.StringType()), T.StructField("reason", T.StringType())]
    + [T.StructField(name, T.TimestampType())
       for name in ("disconnected_at", "reconnected_at", "last_window_end", "next_window_start")]
    + [T.StructField("missed_minutes", T.LongType()), T.StructField("recorded_at", T.TimestampType())]
)  # fmt: skip
PARTITIONING.update({"minute_bars": "days(window_start)", "minute_bar_gaps": None})
WRITE_ORDER["minute_bars"] = "symbol, window_start"


def merge_latest(spark: SparkSession, config: RunConfig, name: str, df: DataFrame, keys: tuple[str, ...],
                 order_column: str, target_range: tuple[str, str, str] | None = None) -> None:  # fmt: skip
    """Upsert `df` into table `name` by `keys`: a new key is inserted, a stored one replaced only by a row with a
    later `order_column` (so merging the same rows again changes nothing): one commit. `df` holds one row per key.

    target_range (column, low, high): every row of `df` has the timestamp column within low..high (text in the
    session time zone, as Spark formats it), so the MERGE reads only the data files whose statistics overlap that
    range (a stream's micro-batch touches its last few minutes)."""
    source = conform(df, name)
    view = f"{name}_batch_{random.randrange(1 << 30)}"
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    if target_range is not None:
        column, low, high = target_range
        on += f" AND t.`{column}` BETWEEN TIMESTAMP '{low}' AND TIMESTAMP '{high}'"
    merge = (
        f"MERGE INTO {table_identifier(config, name)} t USING {view} s ON {on} "
        f"WHEN MATCHED AND s.`{order_column}` > t.`{order_column}` THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    try:
        with_commit_retry(name, lambda: spark.sql(merge))
    finally:
        spark.catalog.dropTempView(view)


# Signs that a commit lost a race (another run committed first, or SQLite held the catalog): nothing
# of the write was committed, and every write here is an idempotent replace, so trying again is safe.
# Iceberg's overwrite-by-filter can drop only whole data files: not a race, so not retried (replace_rows works around it).
PARTIAL_FILE_DELETE = "Cannot delete file where some, but not all, rows match filter"
RETRYABLE_COMMIT_ERRORS = ("CommitFailedException", "ValidationException", "SQLITE_BUSY", "database is locked",
                           "AlreadyExistsException", "already exists")  # fmt: skip
COMMIT_ATTEMPTS = 5


def _java_error_text(exc: BaseException) -> str:
    """The message of a Py4J error's Java exception and of every cause below it."""
    java = getattr(exc, "java_exception", None)
    parts = [str(exc)]
    while java is not None:
        parts.append(f"{java.getClass().getName()}: {java.getMessage()}")
        java = java.getCause()
    return "\n".join(parts)


def with_commit_retry(table: str, write: Callable[[], R], current_snapshot: Callable[[], tuple | None] | None = None) -> R:
    """Run a table write, trying again (with jittered backoff) when its commit lost a race with another run.

    When it still loses, the error says what it lost to: the table's latest snapshot (`current_snapshot`, read only
    then), or a catalog database that stayed locked; never a race that did not happen.
    """
    from py4j.protocol import Py4JJavaError  # pyspark's own dependency; the JVM's errors arrive as these
    from pyspark.errors import AnalysisException

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return write()
        except (Py4JJavaError, AnalysisException) as exc:
            text = _java_error_text(exc)
            if PARTIAL_FILE_DELETE in text or not any(marker in text for marker in RETRYABLE_COMMIT_ERRORS):
                raise
            if "SQLITE_BUSY_SNAPSHOT" in text:  # a catalog connection stuck on an old view: new ones, then retry
                _renew_catalog_connections()
            if attempt == COMMIT_ATTEMPTS:
                cause = next(line for line in text.splitlines() if any(m in line for m in RETRYABLE_COMMIT_ERRORS))
                latest = None
                if current_snapshot is not None:
                    try:
                        latest = current_snapshot()
                    except Exception:  # the message loses a detail; the error stays the same
                        latest = None
                busy = "SQLITE_BUSY" in text or "database is locked" in text
                raise CommitConflictError(table, cause.strip()[:300], latest=latest, busy=busy) from None
            time.sleep(random.uniform(0.5, 2.0) * attempt)
    raise AssertionError("unreachable")


def _renew_catalog_connections() -> None:
    spark = SparkSession.getActiveSession()
    if spark is not None:
        renew_catalog_connections(spark)


def quote_identifier(*parts: str) -> str:
    """Names as one Spark SQL identifier, each part in backticks (a backtick inside doubled): `local`.`stocks`.

    The one way a catalog, namespace, table or branch name enters SQL here. RunConfig already refuses anything but
    letters, digits and _; the quotes also keep a reserved word or a name like `2024` from being read as SQL.
    """
    return ".".join("`" + str(part).replace("`", "``") + "`" for part in parts)


def table_identifier(config: RunConfig, name: str, *metadata: str) -> str:
    """The quoted `catalog`.`namespace`.`table` (then a metadata table such as `snapshots`) for SQL and writeTo."""
    return quote_identifier(config.catalog, config.namespace, name, *metadata)


def _ddl_columns(schema: T.StructType) -> str:
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema.fields)


def ensure_tables(spark: SparkSession, config: RunConfig) -> None:
    """Create the namespace and every table of the contract when missing (idempotent, safe to race)."""
    with_commit_retry(f"{config.catalog}.{config.namespace}", lambda: _create_missing_tables(spark, config))


def _create_missing_tables(spark: SparkSession, config: RunConfig) -> None:
    namespace = quote_identifier(config.catalog, config.namespace)
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {namespace}")
    existing = {row.tableName for row in spark.sql(f"SHOW TABLES IN {namespace}").collect()}
    for name, schema in SCHEMAS.items():
        extra = EXTRA_PROPERTIES.get(name, {})
        if name in existing:
            _add_missing_columns(spark, table_identifier(config, name), schema)
            _add_missing_properties(spark, table_identifier(config, name), extra)
            _evolve_to_months(spark, table_identifier(config, name), name)
            continue
        props = ", ".join(f"'{k}'='{v}'" for k, v in {**TABLE_PROPERTIES, **extra}.items())
        partitioned_by = f"PARTITIONED BY ({PARTITIONING[name]}) " if PARTITIONING[name] else ""
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {table_identifier(config, name)} ({_ddl_columns(schema)}) USING iceberg "
            f"{partitioned_by}TBLPROPERTIES ({props})"
        )
        if name in WRITE_ORDER:
            spark.sql(f"ALTER TABLE {table_identifier(config, name)} WRITE ORDERED BY {WRITE_ORDER[name]}")


def _evolve_to_months(spark: SparkSession, table: str, name: str) -> None:
    """A table made with day partitions (identity on its date) by an earlier version gets month partitions: Iceberg
    partition evolution, metadata only. Files written before keep their day partitions until their month is
    rewritten; reads span both specs. Checked once per table and process."""
    column = MONTH_PARTITIONED.get(name)
    if column is None or table in _MONTHLY_SPEC:
        return
    fields = {f.name for f in spark.table(f"{table}.partitions").schema["partition"].dataType.fields}
    if f"{column}_month" not in fields and column in fields:
        field = quote_identifier(column)
        spark.sql(f"ALTER TABLE {table} REPLACE PARTITION FIELD {field} WITH months({field})")
    _MONTHLY_SPEC.add(table)


# Tables this process has seen with month partitions (one check each).
_MONTHLY_SPEC: set[str] = set()


def _add_missing_columns(spark: SparkSession, table: str, schema: T.StructType) -> None:
    """A table made by an earlier version gains the columns added since (Iceberg schema evolution, metadata only;
    its earlier rows read null there). Checked once per table and process."""
    if table in _CURRENT_SCHEMA:
        return
    have = set(spark.table(table).columns)
    missing = [f for f in schema.fields if f.name not in have]
    if missing:
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({_ddl_columns(T.StructType(missing))})")
    _CURRENT_SCHEMA.add(table)


# Tables this process has seen with every column of SCHEMAS (one check each).
_CURRENT_SCHEMA: set[str] = set()


def _add_missing_properties(spark: SparkSession, table: str, properties: dict[str, str]) -> None:
    # A warehouse made before a property was added gets it (its later writes and compactions follow it); a value
    # the user set is kept.
    if not properties:
        return
    have = {row.key for row in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
    missing = {k: v for k, v in properties.items() if k not in have}
    if missing:
        props = ", ".join(f"'{k}'='{v}'" for k, v in missing.items())
        spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({props})")


# --- write-audit-publish: the market data a run stages on its branch (lib.wap publishes it) ----------------------

# The tables of market data an audited run writes on its branch, in the order lib.wap publishes them: the monthly
# arrays, which readers use, come last, so a reader sees a run's day only once every daily table holds it.
WAP_TABLES = ("stock_tickers", "securities", "corporate_actions", "raw_daily_bars", "stock_prices", "monthly_stock_prices")
# Branches known to exist (True) or not (False), by (warehouse, catalog, namespace, table, branch): one refs lookup per
# table and process; this process's own creates and drops keep it current.
_BRANCHES: dict[tuple[str, str, str, str, str], bool] = {}


def forget_branches() -> None:
    """Drop what this process knows of branches (lib.running.kernel does before each notebook, as a new kernel would)."""
    _BRANCHES.clear()


def run_tag(ds: dt.date | str) -> str:
    """The tag a published run leaves on each table of market data: run-2024-03-28."""
    return f"run-{ds}"


def _branch_key(config: RunConfig, name: str, branch: str) -> tuple[str, str, str, str, str]:
    return (str(config.warehouse), config.catalog, config.namespace, name, branch)


def refs(spark: SparkSession, config: RunConfig, name: str) -> dict[str, tuple[str, int]]:
    """The table's branches and tags: name -> (BRANCH or TAG, snapshot id)."""
    rows = spark.table(table_identifier(config, name, "refs")).select("name", "type", "snapshot_id").collect()
    return {row.name: (row.type, row.snapshot_id) for row in rows}


def branch_exists(spark: SparkSession, config: RunConfig, name: str, branch: str) -> bool:
    key = _branch_key(config, name, branch)
    if key not in _BRANCHES:
        _BRANCHES[key] = refs(spark, config, name).get(branch, ("",))[0] == "BRANCH"
    return _BRANCHES[key]


def staged(config: RunConfig, name: str) -> bool:
    """Whether the run writes `name` on its audit branch (config.wap_branch) rather than on main."""
    return bool(config.wap_branch) and name in WAP_TABLES


def create_branch(spark: SparkSession, config: RunConfig, name: str, branch: str) -> None:
    """Branch `name` at main's current snapshot, unless the branch exists (on an empty table: an empty snapshot)."""
    sql = f"ALTER TABLE {table_identifier(config, name)} CREATE BRANCH IF NOT EXISTS {quote_identifier(branch)}"
    with_commit_retry(name, lambda: spark.sql(sql))
    _BRANCHES[_branch_key(config, name, branch)] = True


def rebase_branch(spark: SparkSession, config: RunConfig, name: str, branch: str, snapshot_id: int) -> None:
    """Point the branch at a snapshot of main (its staged commits are dropped from it: replay them after)."""
    sql = (
        f"ALTER TABLE {table_identifier(config, name)} REPLACE BRANCH {quote_identifier(branch)} "
        f"AS OF VERSION {int(snapshot_id)}"
    )
    with_commit_retry(name, lambda: spark.sql(sql))


def drop_branch(spark: SparkSession, config: RunConfig, name: str, branch: str) -> None:
    sql = f"ALTER TABLE {table_identifier(config, name)} DROP BRANCH IF EXISTS {quote_identifier(branch)}"
    with_commit_retry(name, lambda: spark.sql(sql))
    _BRANCHES[_branch_key(config, name, branch)] = False


def fast_forward(spark: SparkSession, config: RunConfig, name: str, branch: str) -> bool:
    """Move main to the branch's head when main is an ancestor of it; False when main moved since the branch was made."""
    table = quote_identifier(config.namespace, name)  # inside a string literal: backticks, never a quote
    call = f"CALL {quote_identifier(config.catalog)}.system.fast_forward('{table}', 'main', '{branch}')"

    def attempt() -> bool:
        try:
            spark.sql(call).collect()
        except Exception as exc:  # Py4JJavaError or AnalysisException around Iceberg's ValidationException
            if "is not an ancestor of" in _java_error_text(exc):
                return False  # not a lost race: retrying cannot help, the caller replays on the new main
            raise
        return True

    return with_commit_retry(name, attempt)


def tag_main(spark: SparkSession, config: RunConfig, name: str, tag: str, retain_days: int) -> int | None:
    """Tag main's current snapshot (replacing a tag of that name), kept `retain_days` by snapshot expiry."""
    current = refs(spark, config, name).get("main")
    if current is None:  # a table main never wrote: nothing to tag
        return None
    sql = (
        f"ALTER TABLE {table_identifier(config, name)} CREATE OR REPLACE TAG {quote_identifier(tag)} "
        f"AS OF VERSION {int(current[1])} RETAIN {int(retain_days)} DAYS"
    )
    with_commit_retry(name, lambda: spark.sql(sql))
    return current[1]


def _read_identifier(spark: SparkSession, config: RunConfig, name: str) -> str:
    if staged(config, name) and branch_exists(spark, config, name, config.wap_branch):
        return table_identifier(config, name, f"branch_{config.wap_branch}")
    return table_identifier(config, name)


def _write_identifier(spark: SparkSession, config: RunConfig, name: str) -> str:
    if not staged(config, name):
        return table_identifier(config, name)
    if not branch_exists(spark, config, name, config.wap_branch):
        create_branch(spark, config, name, config.wap_branch)
    return table_identifier(config, name, f"branch_{config.wap_branch}")


def read_table(spark: SparkSession, config: RunConfig, name: str) -> DataFrame:
    """The table as the run sees it: its audit branch while the run stages market data there (a table already
    published, or never written by the run, reads main); main otherwise."""
    return spark.table(_read_identifier(spark, config, name))


def conform(df: DataFrame, name: str) -> DataFrame:
    """Select and cast `df` to the table's columns, in order; a missing column is an error, but for security_id,
    which a frame of bars its writer could not tie to a security leaves null (readers then take the ticker for it)."""
    schema = SCHEMAS[name]
    if name in IDENTIFIED and "security_id" not in df.columns:
        df = df.withColumn("security_id", F.lit(None).cast(T.StringType()))
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"cannot write {name}: the frame lacks columns {missing} (has {df.columns})")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _between(column: str, start: dt.date, end: dt.date) -> Column:
    return (F.col(column) >= F.lit(start)) & (F.col(column) <= F.lit(end))


def replace_rows(
    spark: SparkSession, config: RunConfig, name: str, df: DataFrame, column: str, start: dt.date, end: dt.date
) -> None:
    """Atomically replace every row with `column` between start and end (inclusive) by `df`: one commit.

    Rows of `df` outside the range are refused, so a write can never touch data it did not replace. Iceberg drops
    data files by a filter only whole, so a write replaces a range that holds its files whole and writes the rows it
    keeps there again, in the same commit (`_replace_carrying`): the whole months of a table partitioned by month,
    and, where a data file holds rows on both sides of the range (a range run's file, replaced for one of its days),
    the span of the files it touches (`_whole_file_range`).
    """
    refusal = f"refusing to write {name}: rows with {column} outside {start}..{end}"
    # The range is checked by the write's own job (a row outside fails its task, so nothing commits), not by a job of
    # its own that would compute the frame once more.
    conformed = conform(df, name)
    conformed = conformed.withColumn(column, F.when(_between(column, start, end), F.col(column))
                                     .otherwise(F.raise_error(F.lit(f"{_REFUSED} {refusal}"))))  # fmt: skip
    try:
        _replace_rows(spark, config, name, conformed, column, start, end)
    except Exception as exc:
        if _REFUSED in _java_error_text(exc):  # the message, and the Java causes' below it
            raise ValueError(refusal) from None
        raise


# Marks the error a row outside a replace_rows range raises inside the write.
_REFUSED = "[replace_rows]"


def _replace_rows(spark: SparkSession, config: RunConfig, name: str, conformed: DataFrame, column: str,
                  start: dt.date, end: dt.date) -> None:  # fmt: skip
    target = _write_identifier(conformed.sparkSession, config, name)
    latest = lambda: _current_snapshot(spark, target)  # noqa: E731 - read only when a write still conflicts
    if MONTH_PARTITIONED.get(name) == column:
        low, high = start.replace(day=1), _month_end(end)
        with_commit_retry(name, lambda: _replace_carrying(spark, config, name, target, conformed, column, (start, end),
                                                          (low, high)), current_snapshot=latest)  # fmt: skip
        return

    def write() -> None:
        from py4j.protocol import Py4JJavaError  # pyspark's own dependency; the JVM's errors arrive as these

        if PARTITIONING.get(name) is None:
            # An unpartitioned table's files span whatever range wrote them (a range run's forecasts, a day's refill
            # of earlier origins): find the files' span first rather than compute and write the frame for a commit
            # that would fail on a partial delete, then again.
            _replace_carrying(spark, config, name, target, conformed, column, (start, end),
                              _whole_file_range(spark, target, column, start, end))  # fmt: skip
            return
        try:
            conformed.writeTo(target).overwrite(_between(column, start, end))
        except Py4JJavaError as exc:
            if PARTIAL_FILE_DELETE not in _java_error_text(exc):
                raise
            wider = _whole_file_range(spark, target, column, start, end)
            _replace_carrying(spark, config, name, target, conformed, column, (start, end), wider)

    with_commit_retry(name, write, current_snapshot=latest)


def _replace_carrying(spark: SparkSession, config: RunConfig, name: str, target: str, rows: DataFrame, column: str,
                      replaced: tuple, whole: tuple) -> None:  # fmt: skip
    """Overwrite the range `whole` (which holds every data file it touches whole) with `rows` and the stored rows of
    `whole` outside `replaced`, read at the target's latest snapshot. The commit is validated from that snapshot
    (Iceberg's serializable isolation): a row another writer added to `whole` meanwhile fails it (then retried),
    never lost."""
    if whole == replaced:  # nothing to carry: the plain replace
        rows.writeTo(target).overwrite(_between(column, *whole))
        return
    snapshot = _current_snapshot(spark, target)
    writer = None
    if snapshot is not None:
        at = f"SELECT * FROM {table_identifier(config, name)} VERSION AS OF {int(snapshot[0])}"
        kept = spark.sql(at).filter(_between(column, *whole) & ~_between(column, *replaced))
        rows = rows.unionByName(conform(kept, name))
        writer = {"isolation-level": "serializable", "validate-from-snapshot-id": str(snapshot[0])}
    rows.writeTo(target).options(**(writer or {})).overwrite(_between(column, *whole))


def _month_end(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def _whole_file_range(spark: SparkSession, target: str, column: str, start: dt.date, end: dt.date) -> tuple:
    """The smallest range around start..end whose data files lie wholly inside it: widened to the span of every file
    it touches until no file crosses its edges. Reads only `column` (and the file each row is in)."""
    low, high = start, end
    while True:
        spans = (
            spark.table(target).select("_file", column)
            .groupBy("_file")
            .agg(F.min(column).alias("low"), F.max(column).alias("high"))
            .filter((F.col("high") >= F.lit(low)) & (F.col("low") <= F.lit(high)))
            .agg(F.min("low").alias("low"), F.max("high").alias("high"))
            .first()
        )  # fmt: skip
        if spans is None or spans.low is None:
            return low, high
        wider = (min(low, spans.low), max(high, spans.high))
        if wider == (low, high):
            return low, high
        low, high = wider


def _current_snapshot(spark: SparkSession, target: str):
    """The latest snapshot of a table (or of the branch `target` names): (id, committed_at), or None."""
    table, _, ref = target.rpartition(".`branch_")
    ref = ref.rstrip("`") if table else "main"
    base = table or target
    row = (
        spark.sql(f"SELECT s.snapshot_id, s.committed_at FROM {base}.refs r JOIN {base}.snapshots s "
                  f"ON r.snapshot_id = s.snapshot_id WHERE r.name = '{ref}'")  # fmt: skip
        .first()
    )
    return (row.snapshot_id, row.committed_at) if row else None


def overwrite_partitions(config: RunConfig, name: str, df: DataFrame) -> None:
    """Atomically replace the partitions present in `df` (dynamic overwrite): one commit."""
    conformed = conform(df, name)
    target = _write_identifier(conformed.sparkSession, config, name)
    with_commit_retry(name, lambda: conformed.writeTo(target).overwritePartitions())


# What a sighting of an action may change: everything but the key and the day it was first seen.
_ACTION_VALUES = tuple(f.name for f in SCHEMAS["corporate_actions"].fields if f.name not in ("source_id", "first_seen_ds"))


def merge_corporate_actions(spark: SparkSession, config: RunConfig, actions: DataFrame, seen_ds: dt.date) -> None:
    """Upsert the actions seen by the run of `seen_ds` into corporate_actions, by source_id: one commit.

    Needs the corporate_actions columns but first_seen_ds and last_seen_ds (set from `seen_ds`), one row per
    source_id. A new id is inserted. An id seen again keeps its first_seen_ds (the earlier of the two) and takes
    the later last_seen_ds; its values (symbol, dates, ratio, amount) are replaced by this sighting's, which is
    how a vendor's correction under the same id lands, unless the stored row was seen on a later ds (a re-run of
    an older ds does not bring back values since corrected). Running the same ds again changes nothing.
    """
    missing_ids = actions.filter(F.col("source_id").isNull()).limit(1).count()
    if missing_ids:
        raise ValueError("cannot merge corporate_actions: rows without a source_id (the API's id is the key)")
    seen = actions.withColumn("first_seen_ds", F.lit(seen_ds)).withColumn("last_seen_ds", F.lit(seen_ds))
    source = conform(seen, "corporate_actions").dropDuplicates()
    repeated = source.groupBy("source_id").count().filter(F.col("count") > 1).limit(3).collect()
    if repeated:
        ids = ", ".join(row.source_id for row in repeated)
        raise ValueError(f"cannot merge corporate_actions: source_id {ids} comes with different values in one write")
    view = f"corporate_actions_seen_{seen_ds:%Y%m%d}_{random.randrange(1 << 30)}"
    source.createOrReplaceTempView(view)
    newer = "s.last_seen_ds >= t.last_seen_ds"
    updates = ", ".join(
        [f"t.`{c}` = CASE WHEN {newer} THEN s.`{c}` ELSE t.`{c}` END" for c in _ACTION_VALUES if c != "last_seen_ds"]
        + [
            "t.first_seen_ds = least(t.first_seen_ds, s.first_seen_ds)",
            "t.last_seen_ds = greatest(t.last_seen_ds, s.last_seen_ds)",
        ]
    )
    merge = (
        f"MERGE INTO {_write_identifier(spark, config, 'corporate_actions')} t USING {view} s ON t.source_id = s.source_id "
        f"WHEN MATCHED THEN UPDATE SET {updates} WHEN NOT MATCHED THEN INSERT *"
    )
    try:
        with_commit_retry("corporate_actions", lambda: spark.sql(merge))
    finally:
        spark.catalog.dropTempView(view)


def snapshot_count(spark: SparkSession, config: RunConfig, name: str) -> int:
    return spark.table(table_identifier(config, name, "snapshots")).count()


def data_file_count(spark: SparkSession, config: RunConfig, name: str) -> int:
    return spark.table(table_identifier(config, name, "files")).count()


def maintain(
    spark: SparkSession, config: RunConfig, name: str, keep_last: int = 10, where: str | None = None
) -> dict[str, int]:
    """Compact small files and expire old snapshots of one table, so daily runs do not pile up files.

    Compaction rewrites a partition holding two or more small data files into one file per target size,
    sorted by the table's write order when it has one (a partition already in one file is left alone, so a
    second call rewrites nothing). `where`, a SQL predicate such as "month_start >= '2024-03-01'", limits it
    to the partitions a run wrote. Then every snapshot but the last `keep_last` is expired, which deletes the
    files only those snapshots referenced. Table contents never change; time travel reaches back `keep_last`
    commits. Returns counts of data files and snapshots before and after.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1 (the current snapshot), got {keep_last}")
    files_before = data_file_count(spark, config, name)
    snapshots_before = snapshot_count(spark, config, name)
    rewritten = compact(spark, config, name, where)
    deleted = expire_snapshots(spark, config, name, keep_last)
    return {
        "data_files_before": files_before,
        "data_files_after": data_file_count(spark, config, name),
        **rewritten,
        "snapshots_before": snapshots_before,
        "snapshots_after": snapshot_count(spark, config, name),
        "deleted_data_files": deleted,
    }


def compact(spark: SparkSession, config: RunConfig, name: str, where: str | None = None) -> dict[str, int]:
    """Rewrite each partition (of those `where` selects) that holds two or more data files into one file per target
    size, sorted by the table's write order when it has one; a partition already in one file is left alone. One commit
    on main when anything was rewritten; contents never change. Returns the files rewritten and the files added."""
    table = quote_identifier(config.namespace, name)  # inside a string literal: backticks, never a quote
    rewrite_args = [
        f"table => '{table}'",
        f"strategy => '{'sort' if name in WRITE_ORDER else 'binpack'}'",
        # Iceberg's default (5) leaves a partition of 2 to 4 small files as it is, for good.
        "options => map('min-input-files', '2')",
    ]
    if where:
        # A Spark SQL string literal escapes quotes with a backslash ('' would end one literal and start another).
        rewrite_args.append("where => '{}'".format(where.replace("\\", "\\\\").replace("'", "\\'")))
    call = f"CALL {quote_identifier(config.catalog)}.system.rewrite_data_files({', '.join(rewrite_args)})"
    rewritten = with_commit_retry(name, lambda: spark.sql(call).first())
    return {
        "rewritten_data_files": rewritten["rewritten_data_files_count"],
        "added_data_files": rewritten["added_data_files_count"],
    }


def expire_snapshots(spark: SparkSession, config: RunConfig, name: str, keep_last: int) -> int:
    """Expire every snapshot of the table but the last `keep_last` of each branch and those a tag holds, remove the
    tags past their max-ref-age, and delete the files only expired snapshots referenced. Returns the data files deleted.

    older_than is now (to the millisecond, in UTC whatever the session's time zone), so retain_last alone decides
    what stays; the procedure's default keeps every snapshot of the last five days."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1 (the current snapshot), got {keep_last}")
    table = quote_identifier(config.namespace, name)  # inside a string literal: backticks, never a quote
    now = dt.datetime.now(dt.UTC)
    expire = (
        f"CALL {quote_identifier(config.catalog)}.system.expire_snapshots(table => '{table}', retain_last => {int(keep_last)}, "
        f"older_than => TIMESTAMP '{now:%Y-%m-%d %H:%M:%S.%f}+00:00')"
    )
    return with_commit_retry(name, lambda: spark.sql(expire).first())["deleted_data_files_count"]


# --- the namespace's upkeep: once per run, after the publish (lib.storage.wap.publish) -------------------------------

# The tables whose writes can leave a month partition in several files, and the column whose months a run wrote.
COMPACTED_BY_MONTH = {**MONTH_PARTITIONED, "monthly_stock_prices": "month_start"}


@dataclasses.dataclass(frozen=True)
class ExpiryPlan:
    """What snapshot expiry would do to one table, read from its metadata (no Spark job)."""

    expirable: int  # that expire_snapshots(retain_last=keep_last) removes once the stale tags are gone
    stale_tags: list[str]  # past their max-ref-age
    branches: list[str]  # other than main: an audit branch kept for inspection, or another run's, not yet published


def expiry_plan(metadata, keep_last: int, now_ms: int) -> ExpiryPlan:
    """Iceberg's rules of expire_snapshots, applied to a pyiceberg TableMetadata: a tag is stale when its snapshot is
    older than its max-ref-age (measured from the snapshot's timestamp_ms, as Iceberg's RemoveSnapshots does; tag_main
    sets it to keep_run_tags_days), and a snapshot stays when a live tag or branch points at it or it is one of the
    last `keep_last` of main. (Iceberg keeps a branch's last `keep_last` too; a table with a branch is not expired.)"""
    by_id = {s.snapshot_id: s for s in metadata.snapshots}
    stale, branches, kept = [], [], set()
    for name, ref in metadata.refs.items():
        snapshot = by_id.get(ref.snapshot_id)
        if ref.snapshot_ref_type == "tag":
            if snapshot is None or (ref.max_ref_age_ms is not None and now_ms - snapshot.timestamp_ms > ref.max_ref_age_ms):
                stale.append(name)
                continue
        elif name != "main":
            branches.append(name)
        kept.add(ref.snapshot_id)
    main = metadata.refs.get("main")
    ancestor = by_id.get(main.snapshot_id) if main else None
    for _ in range(keep_last):
        if ancestor is None:
            break
        kept.add(ancestor.snapshot_id)
        ancestor = by_id.get(ancestor.parent_snapshot_id)
    return ExpiryPlan(len(by_id.keys() - kept), sorted(stale), sorted(branches))


def maintain_tables(spark: SparkSession, config: RunConfig, keep_last: int, days: list[dt.date]) -> dict[str, dict]:
    """Keep every table of the contract (SCHEMAS) from piling up snapshots, metadata and small files, as cheaply as
    a daily run allows; main's contents never change. Per table:

    - the months of `days` (the run's market days) are compacted in COMPACTED_BY_MONTH's tables (`compact`: a
      month already in one file costs one cheap planning call, 0.1 s);
    - tags past their max-ref-age (a run-<ds> tag older than keep_run_tags_days) are dropped, as expire_snapshots
      would: a metadata commit of 0.04 s, where expire_snapshots costs a second;
    - snapshots are expired (`expire_snapshots`, keeping main's last `keep_last` and every tagged snapshot) only when
      more than `keep_last` snapshots are expirable, i.e. when an untagged table holds more than 2 x keep_last.
    A table that holds a branch other than main (a failed gate's audit branch kept for inspection, or another run's
    not yet published) keeps its snapshots and files: neither compacted (which would move main under the branch) nor
    expired; only its stale tags go. Returns per table the counts of what was done.

    Why the threshold, measured for issue #26 (Spark local[2] on a 2-core machine shared with another job, load 3-6;
    a table of 100 symbols written 30 times): expire_snapshots costs 0.7-1.3 s on a small table with nothing to
    expire, 1.4-1.8 s removing one snapshot and its file, 5.9 s removing 21 snapshots and 20 data files, so running
    it on the 14 tables every run would add 10-20 s to a 35 s run. With the threshold, a table written once a run is
    expired once in keep_last + 1 runs: at most ~14 x 1.5 s / 11, about 2 s a run on average, in practice less (some
    tables are not written every run). Deciding costs no Spark job: pyiceberg reads the 14 tables' metadata in 14 ms
    (its first catalog connection in a process ~0.3 s, importing it 0.5 s), where Spark's metadata tables take
    0.08-0.1 s a query. A run with nothing due spends 0.2 s here (a month to check for compaction), 1 s when a month of
    6 files is compacted; the publish's maintain of the monthly table alone cost 1.2 s every run before.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1 (the current snapshot), got {keep_last}")
    metadata_catalog = pyiceberg_catalog(config)  # the metadata without a Spark job
    report = {}
    for name in SCHEMAS:
        identifier = f"{config.namespace}.{name}"
        if metadata_catalog.table_exists(identifier):
            metadata = lambda identifier=identifier: metadata_catalog.load_table(identifier).metadata  # noqa: E731
            report[name] = _maintain_table(spark, config, name, metadata, keep_last, days)
    return report


def _maintain_table(spark: SparkSession, config: RunConfig, name: str, metadata: Callable, keep_last: int,
                    days: list[dt.date]) -> dict:  # fmt: skip
    """One table's part of maintain_tables; `metadata` reads its current metadata (pyiceberg)."""
    before = metadata()
    done = {"rewritten_data_files": 0, "added_data_files": 0, "deleted_data_files": 0}
    plan = expiry_plan(before, keep_last, int(time.time() * 1000))
    if not plan.branches and name in COMPACTED_BY_MONTH and days and before.current_snapshot_id is not None:
        column = COMPACTED_BY_MONTH[name]
        written = f"{column} >= '{days[0].replace(day=1)}' AND {column} <= '{_month_end(days[-1])}'"
        done.update(compact(spark, config, name, written))
        if done["rewritten_data_files"]:  # a new snapshot on main: one more of the older ones is expirable
            plan = expiry_plan(metadata(), keep_last, int(time.time() * 1000))
    for tag in plan.stale_tags:
        sql = f"ALTER TABLE {table_identifier(config, name)} DROP TAG IF EXISTS {quote_identifier(tag)}"
        with_commit_retry(name, lambda sql=sql: spark.sql(sql))
    if not plan.branches and plan.expirable > keep_last:
        done["deleted_data_files"] = expire_snapshots(spark, config, name, keep_last)
    after = metadata()
    kept = {s.snapshot_id for s in after.snapshots}
    return {
        "snapshots_before": len(before.snapshots),
        "snapshots_after": len(kept),
        "expired_snapshots": sum(s.snapshot_id not in kept for s in before.snapshots),
        **done,
        "retired_tags": sorted(t for t, ref in before.refs.items() if ref.snapshot_ref_type == "tag" and t not in after.refs),
        "kept_for_branches": plan.branches,
    }


def pyiceberg_catalog(config: RunConfig):
    """pyiceberg access to the same catalog, for reading without a JVM."""
    if config.env == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog(config.catalog, warehouse=config.warehouse)
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = Path(config.warehouse).resolve()
    return SqlCatalog(config.catalog, uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri())
