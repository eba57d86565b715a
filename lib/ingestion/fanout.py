"""Ingestion: the ticker universe on the driver, daily bars fanned out over Spark executors, dead letters kept.

Bars are fetched by an asyncio client (`lib.ingestion.async_client`) inside `mapPartitions`, a bounded number of
requests in flight per partition, the rate cap split over the partitions. A request that fails for good
becomes a failure row (`ingest_failures`), never an exception; 401/403 stop the run. Re-running a ds
replaces cleanly: the run refetches the whole span and the writers swap its dates in one atomic commit
(`lib.storage.catalog.replace_rows`), so a re-run after failures fills them in and leaves no stale row behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import threading
import time
import uuid
from collections import Counter
from zoneinfo import ZoneInfo

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib.core.errors import PolygonAuthError, PolygonError, PolygonRequestFailed
from lib.core.trading_days import trading_days
from lib.ingestion import async_client
from lib.ingestion.async_client import AsyncPolygonClient
from lib.ingestion.ratelimit import Pacer, per_partition_rate
from lib.ingestion.rest_client import ClientSettings
from lib.settings.config import DEFAULT_CONCURRENCY, WHOLE_MARKET_TICKERS
from lib.storage.catalog import BAR_SCHEMA, SCHEMAS

NEW_YORK = ZoneInfo("America/New_York")
RANGE_PAGE_BARS = 50_000
TICKER_COLUMNS = [f.name for f in SCHEMAS["stock_tickers"].fields if f.name != "ds"]

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
    seconds: float = 0.0  # wall time of the fan-out (the executors' calls), not of the writes
    partitions: int = 0
    executor_cpu_seconds: float = 0.0  # CPU the partitions' Python workers spent fetching (client cost per call)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def calls_per_minute(self) -> float:
        return 60.0 * self.total_calls / self.seconds if self.seconds else 0.0


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


def _text(value):
    """A ticker as received; anything but a string is a misshapen answer (ValueError, a failure row)."""
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected a ticker string, got {value!r}")


def _int(value):
    return None if value is None else int(value)


def agg_to_row(symbol: str, agg: dict, endpoint: str, received_at: dt.datetime) -> tuple:
    """A grouped/range aggregate (T,o,h,l,c,v,vw,n,t) as a FETCH_SCHEMA row, values as received."""
    return (
        "bar", _text(symbol or agg.get("T")), bar_date(agg["t"]), _float(agg.get("o")), _float(agg.get("h")),
        _float(agg.get("l")), _float(agg.get("c")), _float(agg.get("v")), _float(agg.get("vw")),
        _int(agg.get("n")), endpoint, received_at, None, None, None,
    )  # fmt: skip


def open_close_to_row(record: dict, received_at: dt.datetime) -> tuple:
    """An open-close answer as a FETCH_SCHEMA row; that endpoint serves neither vwap nor transactions."""
    return (
        "bar", _text(record.get("symbol")), dt.date.fromisoformat(record["from"]), _float(record.get("open")),
        _float(record.get("high")), _float(record.get("low")), _float(record.get("close")),
        _float(record.get("volume")), None, None, "open_close", received_at, None, None, None,
    )  # fmt: skip


def _failure_row(task: FetchTask, status: int | None, error: str, attempts: int) -> tuple:
    return ("failure", task.symbol, task.start, None, None, None, None, None, None, None,
            task.endpoint, _now(), status, error[:500], attempts)  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


async def run_task(client: AsyncPolygonClient, task: FetchTask, adjusted: bool) -> list[tuple]:
    """Make one planned call; a request that fails for good becomes a failure row, never an exception."""
    try:
        if task.endpoint == "grouped":
            aggs = await client.grouped_daily(task.start, adjusted)
            received = _now()
            return [agg_to_row(a.get("T"), a, "grouped", received) for a in aggs]
        if task.endpoint == "range":
            aggs = await client.aggs_range(task.symbol, task.start, task.end, adjusted)
            received = _now()
            return [agg_to_row(task.symbol, a, "range", received) for a in aggs]
        if task.endpoint == "open_close":
            record = await client.open_close(task.symbol, task.start, adjusted)
            return [] if record is None else [open_close_to_row(record, _now())]
        raise ValueError(f"unknown endpoint {task.endpoint!r}")
    except PolygonAuthError as exc:
        return [("auth", task.symbol, task.start, None, None, None, None, None, None, None,
                 task.endpoint, _now(), None, str(exc), 1)]  # fmt: skip
    except PolygonRequestFailed as exc:
        return [_failure_row(task, exc.http_status, str(exc), exc.attempts)]
    except (PolygonError, AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:  # a misshapen answer
        return [_failure_row(task, None, f"{type(exc).__name__}: {exc}", 1)]


async def fetch_tasks(
    settings: ClientSettings, tasks: list[FetchTask], adjusted: bool, concurrency: int, pacer: Pacer | None = None
) -> tuple[list[tuple], Counter, Counter]:
    """Run tasks on one event loop with at most `concurrency` requests in flight: FETCH_SCHEMA rows, calls, retries.

    `concurrency` workers take tasks from one shared iterator (each task once); after a 401/403 no worker
    starts another task, and the partition returns a single 'auth' row with what it fetched so far.
    """
    rows: list[tuple] = []
    remaining = iter(tasks)
    refused: list[tuple] = []

    async with AsyncPolygonClient(settings, concurrency=concurrency, pacer=pacer) as client:

        async def worker() -> None:
            for task in remaining:
                if refused:
                    return
                result = await run_task(client, task, adjusted)
                if result and result[0][0] == "auth":
                    refused.extend(result[:1] if not refused else [])
                    return
                rows.extend(result)

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(tasks))))))
    return rows + refused, client.calls, client.retries


def _fetch_partition(settings: ClientSettings, adjusted: bool, concurrency: int, accumulators: dict, running: int):
    """mapPartitionsWithIndex body: one event loop and one async client per partition.

    With a cap, partition i paces at its share and starts i slots of the whole cap late, so the partitions'
    calls interleave evenly instead of all starting together (which matters at 5 calls a minute)."""

    def fetch(index, chunks):
        tasks = [FetchTask(*row) for chunk in chunks for row in chunk]
        if not tasks:
            return
        share = settings.max_calls_per_minute
        pacer = Pacer(share, start_in=(index % running) * 60.0 / (share * running)) if share else None
        cpu_started = time.process_time()
        results, calls, retries = async_client.run(fetch_tasks(settings, tasks, adjusted, concurrency, pacer))
        accumulators["calls"].add(dict(calls))
        accumulators["retries"].add(dict(retries))
        accumulators["cpu"].add(time.process_time() - cpu_started)
        yield from results

    return fetch


class _CounterParam:
    """AccumulatorParam for Counter-like dicts."""

    def zero(self, value):
        return Counter()

    def addInPlace(self, a, b):  # noqa: N802 (Spark's name)
        a.update(b)
        return a


PARTITION_CALLS = 20_000  # calls per partition at most, so the progress bar moves during long fan-outs
# Bars per partition at most: a partition holds its bars as Python rows (about 1 KB each) until its calls are done,
# so this bounds the fan-out's memory to about 2 GB a running partition whatever the span (20 years of the whole
# market in one range run is 55 million bars: 28 partitions, 2 at a time, instead of 2 of 27 GB each).
PARTITION_ROWS = 2_000_000


def expected_rows(tasks: list[FetchTask], tickers: int = WHOLE_MARKET_TICKERS) -> int:
    """Bars the tasks return at most: a grouped day has a bar per ticker, a range call one per market day of its
    span, an open-close call one."""
    per_span: dict[tuple[dt.date, dt.date], int] = {}
    total = 0
    for task in tasks:
        if task.endpoint == "grouped":
            total += tickers
        elif task.endpoint == "range":
            key = (task.start, task.end)
            if key not in per_span:
                per_span[key] = len(trading_days(task.start, task.end))
            total += per_span[key]
        else:
            total += 1
    return total


def fetch_partitions(
    spark: SparkSession, tasks: int, max_calls_per_minute: float = 0.0, partitions: int | None = None, rows: int = 0
) -> tuple[int, int]:
    """(partitions, how many run at once). Without a cap: one per task slot, more for long fan-outs (the progress
    bar moves, a lost task costs little) and for many bars (`rows`, at most PARTITION_ROWS each, in whole waves of
    the slots); a second wave of partitions for a short fan-out only adds its start-up and its tail (bench_ingest:
    11,000 calls, 2 partitions x 128 in flight 350,000/min, 4 partitions 316,000/min).
    With a cap: one per slot, all running at once for the whole fan-out, so the per-partition shares
    (cap / partitions) add up to the cap and no partition starts late."""
    slots = max(1, spark.sparkContext.defaultParallelism)
    if not partitions:
        by_rows = slots * math.ceil(rows / (PARTITION_ROWS * slots)) if rows > PARTITION_ROWS * slots else slots
        wanted = slots if max_calls_per_minute else max(by_rows, math.ceil(tasks / PARTITION_CALLS))
        partitions = max(1, min(tasks, wanted))
    return partitions, min(partitions, slots)


def fetch_bars(
    spark: SparkSession,
    settings: ClientSettings,
    tasks: list[FetchTask],
    *,
    adjusted: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    partitions: int | None = None,
    progress: bool | None = None,
    tickers: int = WHOLE_MARKET_TICKERS,
) -> FetchResult:
    """Run the planned calls on executors; every call is made exactly once (the result is checkpointed).

    Each partition runs an asyncio client with `concurrency` requests in flight; `tickers` (the universe's size)
    bounds what a grouped call returns, which sets how many partitions the bars need (PARTITION_ROWS).
    `settings.max_calls_per_minute` holds for all partitions together: each paces at its share (cap / partitions
    running at once). `progress` shows a tqdm bar over Spark tasks on the driver (default: for 1,000 calls or more).
    Raises PolygonAuthError (401/403: a bad key or an unentitled plan) with the calls made in `.calls`, `.retries`.
    """
    from pyspark.accumulators import AccumulatorParam

    param = type("CounterParam", (_CounterParam, AccumulatorParam), {})()
    accumulators = {"calls": spark.sparkContext.accumulator(Counter(), param),
                    "retries": spark.sparkContext.accumulator(Counter(), param),
                    "cpu": spark.sparkContext.accumulator(0.0)}  # fmt: skip
    partitions, running_at_once = fetch_partitions(
        spark, len(tasks), settings.max_calls_per_minute, partitions, expected_rows(tasks, tickers)
    )
    # Spark runs at most one task per slot, so shares of cap / running_at_once never add up past the cap.
    partition_settings = dataclasses.replace(
        settings, max_calls_per_minute=per_partition_rate(settings.max_calls_per_minute, running_at_once)
    )
    task_rows = [(t.endpoint, t.symbol, t.start, t.end) for t in tasks]
    # One chunk per partition, dealt round-robin: parallelize alone slices in batches of 1,024 rows, which
    # leaves partitions uneven (and an uneven partition finishes late, under a cap at its share of the rate).
    chunks = [task_rows[i::partitions] for i in range(partitions)]
    fetched_rdd = spark.sparkContext.parallelize(chunks, partitions).mapPartitionsWithIndex(
        _fetch_partition(partition_settings, adjusted, concurrency, accumulators, running_at_once)
    )
    started = time.monotonic()
    show = len(tasks) >= 1000 if progress is None else progress
    with spark_task_progress(spark, f"{len(tasks):,} calls over {partitions} partitions", show):
        # localCheckpoint(eager) materialises once and cuts the lineage: a later action never calls the API again.
        # verifySchema=False: the rows are built above to FETCH_SCHEMA; checking each again costs executor CPU per call.
        fetched = spark.createDataFrame(fetched_rdd, FETCH_SCHEMA, verifySchema=False).localCheckpoint(eager=True)
    seconds = time.monotonic() - started
    calls, retries = dict(accumulators["calls"].value), dict(accumulators["retries"].value)
    auth = fetched.filter(F.col("kind") == "auth").select("error").limit(1).collect()
    if auth:
        error = PolygonAuthError(f"{auth[0]['error']} The run stopped; nothing was written.")
        error.calls, error.retries = calls, retries
        raise error
    bars = fetched.filter(F.col("kind") == "bar").drop("kind", "http_status", "error", "attempts")
    failures = fetched.filter(F.col("kind") == "failure").select(
        "symbol", "endpoint", "http_status", "error", "attempts", F.col("received_at").alias("failed_at")
    )
    return FetchResult(bars, failures, calls, retries, len(tasks), seconds, partitions, accumulators["cpu"].value)


@contextlib.contextmanager
def spark_task_progress(spark: SparkSession, description: str, enabled: bool):
    """A driver-side tqdm bar over the Spark tasks (partitions) of the jobs run inside the block, polled each second."""
    if not enabled:
        yield
        return
    from tqdm import tqdm  # plain text on stderr: the kernel has no ipywidgets, and text survives papermill

    context = spark.sparkContext
    group = f"fetch-bars-{uuid.uuid4().hex[:8]}"
    context.setJobGroup(group, description)
    tracker = context.statusTracker()
    done = threading.Event()

    def update(bar) -> None:
        total = completed = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage:
                    total, completed = total + stage.numTasks, completed + stage.numCompletedTasks
        if total:
            bar.total, bar.n = total, completed
            bar.refresh()

    def watch() -> None:
        with tqdm(total=None, desc=description, unit="task", mininterval=2.0) as bar:
            while not done.wait(1.0):
                update(bar)
            update(bar)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        context.setLocalProperty("spark.jobGroup.id", None)
        context.setLocalProperty("spark.job.description", None)


def with_failures(failures: DataFrame, more: list[tuple]) -> DataFrame:
    """`failures` (symbol, endpoint, http_status, error, attempts, failed_at) and the driver's own failed requests."""
    if not more:
        return failures
    return failures.unionByName(failures.sparkSession.createDataFrame(more, failures.schema))


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

    Needs the raw_daily_bars columns; returns the bars' columns (BAR_SCHEMA; `with_securities` adds the security).
    Duplicates stay visible in raw_daily_bars, where the quality step reports them.
    """
    price_columns = [f.name for f in BAR_SCHEMA.fields]
    latest_first = Window.partitionBy("symbol", "date").orderBy(
        F.col("received_at").desc(), *[F.col(c).desc_nulls_last() for c in price_columns[2:]]
    )
    return (
        raw_bars.filter(F.col("symbol").isNotNull() & F.col("date").isNotNull())
        .withColumn("_copy", F.row_number().over(latest_first))
        .filter(F.col("_copy") == 1)
        .select(*price_columns)
    )


def with_securities(prices: DataFrame, intervals: list[tuple]) -> DataFrame:
    """`prices` with security_id: the security whose interval (lib.storage.securities.intervals: ticker, from, until,
    security_id) holds the bar's symbol and date; a bar of a ticker the reference data never listed keeps its ticker
    as its security. The intervals go out as one small broadcast table; each bar meets at most one."""
    schema = T.StructType([T.StructField("_ticker", T.StringType()), T.StructField("_from", T.DateType()),
                           T.StructField("_until", T.DateType()), T.StructField("security_id", T.StringType())])  # fmt: skip
    table = F.broadcast(prices.sparkSession.createDataFrame(intervals, schema))
    holds = (
        (prices["symbol"] == table["_ticker"])
        & (table["_from"].isNull() | (prices["date"] >= table["_from"]))
        & (table["_until"].isNull() | (prices["date"] < table["_until"]))
    )
    joined = prices.join(table, holds, "left")
    security = F.coalesce(table["security_id"], prices["symbol"]).alias("security_id")
    return joined.select(*[prices[c] for c in prices.columns if c != "security_id"], security)


# How far back a run looks for actions besides its own span: a vendor may publish a split or dividend after its
# ex-date, and the bars before it (stored as traded) still need it on read.
ACTION_LOOKBACK_DAYS = 30


def action_window(start_ds: dt.date, ds: dt.date) -> tuple[dt.date, dt.date]:
    """The ex-dates a run asks for: its whole span, and at least the ACTION_LOOKBACK_DAYS before ds. Never after ds:
    an announced action whose ex-date is still to come must not adjust today's bars; the run of its ex-date fetches it."""
    return min(start_ds, ds - dt.timedelta(days=ACTION_LOOKBACK_DAYS)), ds


def _date(value) -> dt.date | None:
    return dt.date.fromisoformat(str(value)[:10]) if value else None


def actions_frame(spark: SparkSession, splits: list[dict], dividends: list[dict], symbols: set[str] | None = None) -> DataFrame:
    """Splits and dividends as received (/stocks/v1/splits, /stocks/v1/dividends) in the corporate_actions columns
    but first_seen_ds and last_seen_ds, one row per source_id (the API's id); only tickers in `symbols` when given."""
    rows = []
    for split in splits:
        rows.append((split.get("ticker"), "split", _date(split.get("execution_date")), _float(split.get("split_from")),
                     _float(split.get("split_to")), None, None, None, None, None, str(split.get("id"))))  # fmt: skip
    for dividend in dividends:
        rows.append((dividend.get("ticker"), "dividend", _date(dividend.get("ex_dividend_date")), None, None,
                     _float(dividend.get("cash_amount")), dividend.get("currency"),
                     _date(dividend.get("declaration_date")), _date(dividend.get("record_date")),
                     _date(dividend.get("pay_date")), str(dividend.get("id"))))  # fmt: skip
    if symbols is not None:
        rows = [r for r in rows if r[0] in symbols]
    schema = T.StructType([f for f in SCHEMAS["corporate_actions"].fields if f.name not in ("first_seen_ds", "last_seen_ds")])
    return spark.createDataFrame(rows, schema)
