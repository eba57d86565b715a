"""Ingestion: the ticker universe on the driver, daily bars fanned out over Spark executors, dead letters kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib.catalog import SCHEMAS
from lib.errors import PolygonAuthError, PolygonError, PolygonRequestFailed
from lib.polygon import ClientSettings, PolygonClient

NEW_YORK = ZoneInfo("America/New_York")
RANGE_PAGE_BARS = 50_000
TICKER_COLUMNS = [f.name for f in SCHEMAS["stock_tickers"].fields if f.name != "ds"]

TASK_SCHEMA = T.StructType(
    [
        T.StructField("endpoint", T.StringType()),
        T.StructField("symbol", T.StringType()),
        T.StructField("start", T.DateType()),
        T.StructField("end", T.DateType()),
    ]
)
# One row per fetched bar ('bar'), per request that failed for good ('failure') or per refused key ('auth').
FETCH_SCHEMA = T.StructType(
    [T.StructField("kind", T.StringType())]
    + [f for f in SCHEMAS["raw_daily_bars"].fields if f.name != "ds"]
    + [
        T.StructField("http_status", T.IntegerType()),
        T.StructField("error", T.StringType()),
        T.StructField("attempts", T.IntegerType()),
    ]
)


@dataclasses.dataclass(frozen=True)
class FetchTask:
    """One API call to plan: `grouped` (a market day), `range` (a ticker over a span) or `open_close`."""

    endpoint: str
    symbol: str | None
    start: dt.date
    end: dt.date


@dataclasses.dataclass
class FetchResult:
    raw_bars: DataFrame
    failures: DataFrame
    calls: dict[str, int]
    retries: dict[str, int]
    tasks: int


def call_counts(n_days: int, n_tickers: int) -> dict[str, int]:
    """API calls each strategy needs for a span of n_days market days and n_tickers tickers (bars only)."""
    return {
        "grouped": n_days,
        "range": n_tickers * max(1, math.ceil(n_days / RANGE_PAGE_BARS)) if n_days else 0,
        "per_ticker": n_days * n_tickers,
    }


def choose_strategy(requested: str, n_days: int, n_tickers: int) -> tuple[str, str]:
    """Resolve `auto` to the strategy with the fewest calls; say why."""
    counts = call_counts(n_days, n_tickers)
    if requested != "auto":
        return requested, f"strategy {requested!r} was requested: {counts[requested]:,} bar calls"
    chosen = "grouped" if counts["grouped"] <= counts["range"] else "range"
    other = "range" if chosen == "grouped" else "grouped"
    return chosen, (
        f"auto chose {chosen!r}: {counts[chosen]:,} calls for {n_days} market days x {n_tickers:,} tickers, "
        f"against {counts[other]:,} for {other!r} and {counts['per_ticker']:,} for 'per_ticker'"
    )


def plan_tasks(strategy: str, days: list[dt.date], tickers: list[str]) -> list[FetchTask]:
    """The calls of a strategy over the market days of the span (non-trading days get no call)."""
    if not days:
        return []
    if strategy == "grouped":
        return [FetchTask("grouped", None, d, d) for d in days]
    if strategy == "range":
        return [FetchTask("range", t, days[0], days[-1]) for t in tickers]
    if strategy == "per_ticker":
        return [FetchTask("open_close", t, d, d) for t in tickers for d in days]
    raise ValueError(f"unknown strategy {strategy!r}")


def bar_date(epoch_ms: int) -> dt.date:
    """The market date of an aggregate's `t` (epoch ms), read in America/New_York."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=NEW_YORK).date()


def _float(value):
    return None if value is None else float(value)


def _int(value):
    return None if value is None else int(value)


def agg_to_row(symbol: str, agg: dict, endpoint: str, received_at: dt.datetime) -> tuple:
    """A grouped/range aggregate (T,o,h,l,c,v,vw,n,t) as a FETCH_SCHEMA row, values as received."""
    return (
        "bar", symbol or agg.get("T"), bar_date(agg["t"]), _float(agg.get("o")), _float(agg.get("h")),
        _float(agg.get("l")), _float(agg.get("c")), _float(agg.get("v")), _float(agg.get("vw")),
        _int(agg.get("n")), endpoint, received_at, None, None, None,
    )  # fmt: skip


def open_close_to_row(record: dict, received_at: dt.datetime) -> tuple:
    """An open-close answer as a FETCH_SCHEMA row; that endpoint serves neither vwap nor transactions."""
    return (
        "bar", record.get("symbol"), dt.date.fromisoformat(record["from"]), _float(record.get("open")),
        _float(record.get("high")), _float(record.get("low")), _float(record.get("close")),
        _float(record.get("volume")), None, None, "open_close", received_at, None, None, None,
    )  # fmt: skip


def _failure_row(task: FetchTask, status: int | None, error: str, attempts: int) -> tuple:
    return ("failure", task.symbol, task.start, None, None, None, None, None, None, None,
            task.endpoint, _now(), status, error[:500], attempts)  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def run_task(client: PolygonClient, task: FetchTask, adjusted: bool) -> list[tuple]:
    """Make one planned call; a request that fails for good becomes a failure row, never an exception."""
    try:
        if task.endpoint == "grouped":
            aggs = client.grouped_daily(task.start, adjusted)
            received = _now()
            return [agg_to_row(a.get("T"), a, "grouped", received) for a in aggs]
        if task.endpoint == "range":
            aggs = client.aggs_range(task.symbol, task.start, task.end, adjusted)
            received = _now()
            return [agg_to_row(task.symbol, a, "range", received) for a in aggs]
        if task.endpoint == "open_close":
            record = client.open_close(task.symbol, task.start, adjusted)
            return [] if record is None else [open_close_to_row(record, _now())]
        raise ValueError(f"unknown endpoint {task.endpoint!r}")
    except PolygonAuthError as exc:
        return [("auth", task.symbol, task.start, None, None, None, None, None, None, None,
                 task.endpoint, _now(), None, str(exc), 1)]  # fmt: skip
    except PolygonRequestFailed as exc:
        return [_failure_row(task, exc.http_status, str(exc), exc.attempts)]
    except (PolygonError, KeyError, TypeError, ValueError) as exc:
        return [_failure_row(task, None, f"{type(exc).__name__}: {exc}", 1)]


def _fetch_partition(settings: ClientSettings, adjusted: bool, concurrency: int, accumulators: dict):
    """mapPartitions body: one client per partition, a bounded thread pool over its tasks."""

    def fetch(rows):
        client = PolygonClient(dataclasses.replace(settings, pool_size=concurrency))
        tasks = [FetchTask(r.endpoint, r.symbol, r.start, r.end) for r in rows]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for result in pool.map(lambda t: run_task(client, t, adjusted), tasks):
                yield from result
        for endpoint, n in client.calls.items():
            accumulators["calls"].add({endpoint: n})
        for endpoint, n in client.retries.items():
            accumulators["retries"].add({endpoint: n})

    return fetch


class _CounterParam:
    """AccumulatorParam for Counter-like dicts."""

    def zero(self, value):
        return Counter()

    def addInPlace(self, a, b):  # noqa: N802 (Spark's name)
        a.update(b)
        return a


def fetch_bars(
    spark: SparkSession,
    settings: ClientSettings,
    tasks: list[FetchTask],
    *,
    adjusted: bool = True,
    concurrency: int = 16,
    partitions: int | None = None,
) -> FetchResult:
    """Run the planned calls on executors; every call is made exactly once (the result is checkpointed)."""
    from pyspark.accumulators import AccumulatorParam

    param = type("CounterParam", (_CounterParam, AccumulatorParam), {})()
    accumulators = {"calls": spark.sparkContext.accumulator(Counter(), param),
                    "retries": spark.sparkContext.accumulator(Counter(), param)}  # fmt: skip
    partitions = partitions or max(1, min(len(tasks), spark.sparkContext.defaultParallelism * 2))
    task_rows = [(t.endpoint, t.symbol, t.start, t.end) for t in tasks]
    task_df = spark.createDataFrame(task_rows, TASK_SCHEMA).repartition(partitions)
    fetched_rdd = task_df.rdd.mapPartitions(_fetch_partition(settings, adjusted, concurrency, accumulators))
    # localCheckpoint(eager) materialises once and cuts the lineage: a later action never calls the API again.
    fetched = spark.createDataFrame(fetched_rdd, FETCH_SCHEMA).localCheckpoint(eager=True)
    auth = fetched.filter(F.col("kind") == "auth").select("error").limit(1).collect()
    if auth:
        raise PolygonAuthError(auth[0]["error"])
    bars = fetched.filter(F.col("kind") == "bar").drop("kind", "http_status", "error", "attempts")
    failures = fetched.filter(F.col("kind") == "failure").select(
        "symbol", "endpoint", "http_status", "error", "attempts", F.col("received_at").alias("failed_at")
    )
    return FetchResult(bars, failures, dict(accumulators["calls"].value), dict(accumulators["retries"].value), len(tasks))


def with_run_ds(df: DataFrame, ds: dt.date) -> DataFrame:
    """Adds `ds`, the run's date."""
    return df.withColumn("ds", F.lit(ds))


def tickers_frame(spark: SparkSession, records: list[dict], ds: dt.date) -> DataFrame:
    """The ticker universe as received, one row per ticker, with the run's `ds`."""
    rows = [tuple(_ticker_value(r, c) for c in TICKER_COLUMNS) + (ds,) for r in records]
    return spark.createDataFrame(rows, SCHEMAS["stock_tickers"])


def _ticker_value(record: dict, column: str):
    value = record.get(column)
    if column == "active":
        return None if value is None else bool(value)
    return None if value is None else str(value)


def raw_to_prices(raw_bars: DataFrame) -> DataFrame:
    """One row per (symbol, date) from raw bars: the latest received copy wins (ties broken by values).

    Needs the raw_daily_bars columns; returns the stock_prices columns. Duplicates stay visible in
    raw_daily_bars, where the quality step reports them.
    """
    price_columns = [f.name for f in SCHEMAS["stock_prices"].fields]
    latest_first = Window.partitionBy("symbol", "date").orderBy(
        F.col("received_at").desc(), *[F.col(c).desc_nulls_last() for c in price_columns[2:]]
    )
    return (
        raw_bars.filter(F.col("symbol").isNotNull() & F.col("date").isNotNull())
        .withColumn("_copy", F.row_number().over(latest_first))
        .filter(F.col("_copy") == 1)
        .select(*price_columns)
    )
