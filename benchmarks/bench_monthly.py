"""Layouts of monthly_stock_prices against the same data as daily rows: files, bytes, write and read times.

Simulator data (11,000 tickers x 12 months; `--quick`: 1,000 x 3) goes into a `stock_prices`-like table of
daily rows, then into each candidate layout of the monthly arrays through the workspace's own code path
(`monthly.apply_days`, then a dynamic overwrite of the touched month partitions, one commit). The seed's
layout (partitioned by symbol, month and metric: one partition per array) is measured on a subset of
symbols and scaled linearly to the full universe. Everything lives in a temporary warehouse, removed at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lib.settings.config import RunConfig
from lib.storage import catalog, monthly

SEED = 42
YEAR = 2025  # a complete past year of NYSE sessions
READ_REPEATS = 2  # reads and daily updates are timed best-of-n (the first run also warms the JVM)
DAY_BY_DAY_MONTH = 6  # every session of this month applied one by one, then scaled to the backfill's day count


@dataclasses.dataclass(frozen=True)
class Size:
    tickers: int
    months: int
    seed_layout_symbols: int  # the seed's layout is written for this many symbols, then scaled


FULL = Size(tickers=11_000, months=12, seed_layout_symbols=20)
QUICK = Size(tickers=1_000, months=3, seed_layout_symbols=20)


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    partitioned_by: str
    ordered_by: str | None


# Sorted by its partition columns so that a task writes one partition at a time: unsorted, Iceberg's fanout
# writer keeps a Parquet writer open per partition and runs out of heap at a few thousand partitions.
SEED_LAYOUT = Layout("seed: symbol x month x metric", "symbol, month_start, metric_name", "symbol, month_start, metric_name")
DEFAULT_LAYOUT = Layout(
    "default: month, sorted by symbol",
    catalog.PARTITIONING["monthly_stock_prices"],
    catalog.WRITE_ORDER["monthly_stock_prices"],
)
CANDIDATES = (
    DEFAULT_LAYOUT,
    Layout("month, sorted by metric, symbol", "month_start", "metric_name, symbol"),
    Layout("month x bucket(16, symbol)", "month_start, bucket(16, symbol)", "symbol, metric_name"),
)
DAILY_ROWS = Layout("daily rows (stock_prices)", catalog.PARTITIONING["stock_prices"], catalog.WRITE_ORDER["stock_prices"])


@dataclasses.dataclass
class Figures:
    layout: str
    data_files: float
    bytes: float
    daily_update_s: float
    backfill_s: float
    read_symbol_s: float
    read_returns_s: float
    scaled: bool = False


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def best_of(action: Callable[[], object], repeats: int = READ_REPEATS) -> float:
    return min(timed(action) for _ in range(repeats))


def year_sessions(months: int) -> list[dt.date]:
    from lib.core.trading_days import trading_days

    last_day = dt.date(YEAR, months % 12 + 1, 1) - dt.timedelta(days=1) if months < 12 else dt.date(YEAR, 12, 31)
    return trading_days(dt.date(YEAR, 1, 1), last_day)


def simulator_prices(tickers: int, sessions: list[dt.date], path: Path) -> int:
    """Write the simulator's bars for `sessions` as `stock_prices` rows to a Parquet file; return the row count."""
    from lib.simulator.data import Market

    market = Market(tickers, SEED)
    symbols = np.asarray(market.universe.symbols, dtype=object)
    frames = []
    for day in sessions:
        columns = market.day_columns(market.calendar.index_of(day))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbols[columns["ids"]],
                    "date": day,
                    "open": columns["o"],
                    "high": columns["h"],
                    "low": columns["l"],
                    "close": columns["c"],
                    "volume": columns["v"],
                    "vwap": columns["vw"],
                    "transactions": columns["n"].astype("int64"),
                }
            )
        )
    prices = pd.concat(frames, ignore_index=True)
    pq.write_table(pa.Table.from_pandas(prices, preserve_index=False), path)
    return len(prices)


def create_table(spark, config: RunConfig, table: str, schema_name: str, layout: Layout) -> str:
    """An empty table with the contract's schema and properties, partitioned and sorted as `layout` says."""
    name = f"{config.catalog}.{config.namespace}.{table}"
    props = ", ".join(f"'{k}'='{v}'" for k, v in catalog.TABLE_PROPERTIES.items())
    spark.sql(f"DROP TABLE IF EXISTS {name} PURGE")
    spark.sql(
        f"CREATE TABLE {name} ({catalog._ddl_columns(catalog.SCHEMAS[schema_name])}) USING iceberg "
        f"PARTITIONED BY ({layout.partitioned_by}) TBLPROPERTIES ({props})"
    )
    if layout.ordered_by:
        spark.sql(f"ALTER TABLE {name} WRITE ORDERED BY {layout.ordered_by}")
    return name


def files_and_bytes(spark, table: str) -> tuple[int, int]:
    row = spark.sql(f"SELECT count(*) AS files, coalesce(sum(file_size_in_bytes), 0) AS bytes FROM {table}.files").first()
    return int(row.files), int(row.bytes)


def apply_days(spark, table: str, prices, days: list[dt.date]):
    """What run_rollup computes: the new arrays of the months `days` touch, checkpointed."""
    from pyspark.sql import functions as F

    months = sorted({monthly.month_start(d) for d in days})
    existing = spark.table(table).filter(F.col("month_start").isin(months))
    return monthly.apply_days(prices, existing, days).localCheckpoint(eager=True)


def write(table: str, updated) -> None:
    """What run_rollup writes: a dynamic overwrite of the touched months, one commit."""
    catalog.conform(updated, "monthly_stock_prices").writeTo(table).overwritePartitions()


def apply_and_write(spark, table: str, prices, days: list[dt.date]) -> None:
    write(table, apply_days(spark, table, prices, days))


def noop(df) -> None:
    """Run the whole query without keeping its result."""
    df.write.format("noop").mode("overwrite").save()


def monthly_reads(spark, table: str, symbol: str):
    """The two reads on a monthly-array table: one symbol's closes exploded to days; every symbol's monthly returns."""
    from pyspark.sql import functions as F

    arrays = spark.table(table)
    symbol_history = monthly.explode_metrics(arrays.filter((F.col("symbol") == symbol) & (F.col("metric_name") == "close")))
    closes = arrays.filter(F.col("metric_name") == "close").select(
        "symbol", "month_start", F.filter("metric_array", lambda value: value.isNotNull()).alias("closes")
    )
    returns = closes.where(F.size("closes") > 0).select(
        "symbol",
        "month_start",
        (F.element_at("closes", -1) / F.element_at("closes", 1) - 1).alias("monthly_return"),
    )
    return symbol_history, returns


def daily_reads(spark, table: str, symbol: str):
    """The same two reads on daily rows (trends.monthly_returns: last close / first close - 1 per month)."""
    from pyspark.sql import functions as F

    from lib.analytics import trends

    rows = spark.table(table)
    symbol_history = rows.filter(F.col("symbol") == symbol).select("symbol", "date", "close")
    return symbol_history, trends.monthly_returns(rows.select("symbol", "date", "close"))


def measure_monthly(spark, config, layout: Layout, table: str, prices_table: str, sessions, update_day, symbol,
                    symbols=None, backfill=None) -> Figures:  # fmt: skip
    """Figures of one layout. `backfill` = (arrays, seconds): the year's arrays computed once for every layout
    (the computation does not depend on the layout), so only their write is timed here."""
    from pyspark.sql import functions as F

    table = create_table(spark, config, table, "monthly_stock_prices", layout)
    prices = spark.table(prices_table)
    if symbols is not None:
        prices = prices.filter(F.col("symbol").isin(symbols))
    if backfill is None:
        backfill_s = timed(lambda: apply_and_write(spark, table, prices, sessions))
    else:
        arrays, compute_s = backfill
        backfill_s = compute_s + timed(lambda: write(table, arrays))
    data_files, data_bytes = files_and_bytes(spark, table)
    # Best of n: applying the same day again is idempotent, so every repeat does the same work.
    daily_update_s = best_of(lambda: apply_and_write(spark, table, prices, [update_day]))
    symbol_history, returns = monthly_reads(spark, table, symbol)
    read_symbol_s = best_of(lambda: symbol_history.collect())
    read_returns_s = best_of(lambda: noop(returns))
    return Figures(layout.name, data_files, data_bytes, daily_update_s, backfill_s, read_symbol_s, read_returns_s)


def measure_daily_rows(spark, config, table: str, source: Path, update_day, symbol) -> Figures:
    from pyspark.sql import functions as F

    table = create_table(spark, config, table, "stock_prices", DAILY_ROWS)
    source_rows = catalog.conform(spark.read.parquet(str(source)), "stock_prices")
    backfill_s = timed(lambda: source_rows.writeTo(table).overwritePartitions())
    data_files, data_bytes = files_and_bytes(spark, table)
    one_day = source_rows.filter(F.col("date") == F.lit(update_day))
    daily_update_s = best_of(lambda: one_day.writeTo(table).overwritePartitions())
    symbol_history, returns = daily_reads(spark, table, symbol)
    read_symbol_s = best_of(lambda: symbol_history.collect())
    read_returns_s = best_of(lambda: noop(returns))
    return Figures(DAILY_ROWS.name, data_files, data_bytes, daily_update_s, backfill_s, read_symbol_s, read_returns_s)


def scaled(figures: Figures, factor: float) -> Figures:
    """Seed-layout figures measured on a subset of symbols, scaled linearly to the whole universe.

    Files, bytes, write times and the all-symbols read grow with the number of symbols; the one-symbol read
    is left as measured (a lower bound: planning over the full table's manifests only adds to it).
    """
    return dataclasses.replace(
        figures,
        data_files=figures.data_files * factor,
        bytes=figures.bytes * factor,
        daily_update_s=figures.daily_update_s * factor,
        backfill_s=figures.backfill_s * factor,
        read_returns_s=figures.read_returns_s * factor,
        scaled=True,
    )


def print_table(rows: list[Figures], daily: Figures, size: Size, day_count: int, update_day: dt.date) -> None:
    header = (
        f"| layout | data files | MB | bytes vs daily rows | daily update (s) | {day_count}-day backfill (s) "
        "| read: one symbol's closes (s) | read: all monthly returns (s) |"
    )
    print(header)
    print("|" + " --- |" * 8)
    for f in [*rows, daily]:
        star = "*" if f.scaled else ""
        print(
            f"| {f.layout}{star} | {f.data_files:,.0f}{star} | {f.bytes / 1e6:,.1f}{star} | {f.bytes / daily.bytes:.2f}x "
            f"| {f.daily_update_s:.1f}{star} | {f.backfill_s:.1f}{star} | {f.read_symbol_s:.2f} | {f.read_returns_s:.2f}{star} |"
        )
    print(
        f"\n{size.tickers:,} tickers x {size.months} months of {YEAR} ({day_count} sessions); daily update = "
        f"apply {update_day} to its month and overwrite that month partition. "
        f"* seed layout measured on {size.seed_layout_symbols} symbols and scaled x{size.tickers / size.seed_layout_symbols:.0f} "
        "(its one-symbol read is as measured on the subset)."
    )


def main(quick: bool = False) -> None:
    from lib.storage.session import build_local_session

    size = QUICK if quick else FULL
    sessions = year_sessions(size.months)
    update_day = sessions[-1]
    workdir = Path(tempfile.mkdtemp(prefix="bench_monthly_"))
    spark = None
    try:
        source = workdir / "prices.parquet"
        started = time.perf_counter()
        price_rows = simulator_prices(size.tickers, sessions, source)
        print(f"simulator: {price_rows:,} daily bars for {size.tickers:,} tickers in {time.perf_counter() - started:.0f}s")

        spark = build_local_session("bench", workdir / "warehouse", app_name="bench_monthly")
        config = RunConfig(ds=update_day, start_ds=sessions[0], warehouse=str(workdir / "warehouse"),
                           catalog="bench", namespace="bench")  # fmt: skip
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {config.catalog}.{config.namespace}")
        all_symbols = sorted(r.symbol for r in spark.read.parquet(str(source)).select("symbol").distinct().collect())
        symbol = all_symbols[len(all_symbols) // 2]

        # Warm the JVM (class loading, code generation) on a throwaway table, so the first layout pays no extra.
        warm_up = create_table(spark, config, "warm_up", "monthly_stock_prices", DEFAULT_LAYOUT)
        apply_and_write(spark, warm_up, spark.read.parquet(str(source)), sessions[:3])

        daily = measure_daily_rows(spark, config, "daily_rows", source, update_day, symbol)
        prices_table = f"{config.catalog}.{config.namespace}.daily_rows"
        print(f"measured {daily}", flush=True)
        started = time.perf_counter()
        # Into an empty table, as a first backfill: no existing arrays to merge.
        year_arrays = monthly.apply_days(spark.table(prices_table), None, sessions).localCheckpoint(eager=True)
        backfill = (year_arrays, time.perf_counter() - started)
        print(f"computed the {len(sessions)}-day backfill's arrays in {backfill[1]:.1f}s", flush=True)
        rows = []
        for index, layout in enumerate(CANDIDATES):
            rows.append(
                measure_monthly(
                    spark, config, layout, f"monthly_{index}", prices_table, sessions, update_day, symbol, backfill=backfill
                )
            )
            print(f"measured {rows[-1]}", flush=True)

        # Evenly spaced symbols (the one read symbol among them), so the subset looks like the universe.
        step = len(all_symbols) / size.seed_layout_symbols
        subset = sorted({all_symbols[int(i * step)] for i in range(size.seed_layout_symbols)} | {symbol})
        seed = measure_monthly(spark, config, SEED_LAYOUT, "monthly_seed", prices_table, sessions, update_day, symbol,
                               symbols=subset)  # fmt: skip
        rows.append(scaled(seed, len(all_symbols) / len(subset)))
        print(f"measured {seed} on {len(subset)} symbols", flush=True)

        # Range backfill against the same days applied one by one (as a daily job would), on the default layout.
        # A whole month is the sample: a day costs more the longer its month's arrays already are, so the first
        # days of a month alone would flatter the day-by-day path; months are alike, so its mean scales to the year.
        table = create_table(spark, config, "monthly_day_by_day", "monthly_stock_prices", DEFAULT_LAYOUT)
        prices = spark.table(prices_table)
        sample_month = min(DAY_BY_DAY_MONTH, size.months)
        sample = [day for day in sessions if day.month == sample_month]
        one_by_one_s = 0.0
        for day in sample:
            one_by_one_s += timed(lambda day=day: apply_and_write(spark, table, prices, [day]))
            print(f"applied {day} alone: {one_by_one_s:.1f}s so far", flush=True)
        per_day_s = one_by_one_s / len(sample)

        print()
        print_table(rows, daily, size, len(sessions), update_day)
        default = rows[0]
        seed_scaled = rows[-1]
        print(
            f"\nrange backfill vs day by day ({DEFAULT_LAYOUT.name}): the {len(sample)} sessions of {YEAR}-{sample_month:02d} "
            f"one by one took "
            f"{one_by_one_s:.1f}s ({per_day_s:.1f}s a day), scaled to {len(sessions)} days: {per_day_s * len(sessions):.0f}s; "
            f"the one-pass backfill took {default.backfill_s:.1f}s: {per_day_s * len(sessions) / default.backfill_s:.0f}x faster"
        )
        for f in rows[:-1]:
            print(
                f"{f.layout}: {seed_scaled.data_files / f.data_files:,.0f}x fewer data files than the seed's layout, "
                f"bytes {f.bytes / daily.bytes:.2f}x the daily rows"
            )
    finally:
        try:
            if spark is not None:
                spark.stop()
        finally:  # also when the JVM is already gone (spark.stop then raises)
            shutil.rmtree(workdir, ignore_errors=True)
