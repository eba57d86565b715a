"""The four pipeline steps: what a notebook, a test, the batch runner and a Glue job all call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lib.analytics import anomalies, forecast, indicators, prices, trends
from lib.core.errors import ConfigError, MissingInputError, PolygonRequestFailed
from lib.core.trading_days import last_trading_day_on_or_before, trading_days
from lib.ingestion import fanout, securities
from lib.ingestion.rest_client import ClientSettings, PolygonClient
from lib.quality import checks, gate
from lib.quality.checks import PRICE_CONTEXT_DAYS, QualityInputs
from lib.settings.config import RunConfig
from lib.storage import catalog, monthly, wap
from lib.storage import securities as identity
from lib.storage.monthly import month_start

# The driver's calls for reference data (the rest are bar calls, fanned out over the executors).
REFERENCE_ENDPOINTS = ("tickers", "ticker_details", "splits", "dividends")


@dataclasses.dataclass
class IngestReport:
    strategy: str
    reason: str
    market_days: list[dt.date]
    tickers: int
    raw_rows: int
    price_rows: int
    failures: int
    calls: dict[str, int]  # by endpoint, the driver's ticker pages included
    retries: dict[str, int]
    seconds: float  # the whole step: tickers, fan-out, writes
    bars_per_day: pd.DataFrame  # date, bars
    failure_sample: pd.DataFrame
    fetch_seconds: float = 0.0  # the executors' fan-out alone
    partitions: int = 0
    concurrency: int = 0  # requests in flight per partition
    max_calls_per_minute: float = 0.0
    splits_seen: int = 0  # corporate actions received for the action window (upserted into corporate_actions)
    dividends_seen: int = 0
    action_window: tuple[dt.date, dt.date] | None = None
    adjusted: bool = False  # how the bars were fetched (False: as traded, the stored default)
    securities: int = 0  # ticker periods in the securities table after the run
    renames: list = dataclasses.field(default_factory=list)  # (old ticker, new ticker, day) the run learned of
    delistings: list = dataclasses.field(default_factory=list)  # (ticker, day) the run learned of
    reference_calls: dict = dataclasses.field(default_factory=dict)  # securities' own calls: vanished, details
    migrated_rows: int = 0  # stock_prices rows of an earlier version given their security_id by this run

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def bar_calls(self) -> int:
        return sum(n for endpoint, n in self.calls.items() if endpoint not in REFERENCE_ENDPOINTS)

    @property
    def calls_per_minute(self) -> float:
        """Bar calls per minute of the fan-out (the executors' rate, which the cap applies to)."""
        return 60.0 * self.bar_calls / self.fetch_seconds if self.fetch_seconds else 0.0

    def summary(self) -> str:
        if not self.market_days:
            return "no NYSE trading day in the span: nothing to fetch (an empty run)"
        cap = f"capped at {self.max_calls_per_minute:,.0f}/min" if self.max_calls_per_minute else "no rate cap"
        return (
            f"{self.reason}\n"
            f"{len(self.market_days)} market days, {self.tickers:,} tickers, {self.total_calls:,} calls "
            f"({self.calls_per_minute:,.0f}/min, {sum(self.retries.values())} retries) in {self.seconds:.1f}s; "
            f"raw_daily_bars {self.raw_rows:,} rows, stock_prices {self.price_rows:,} rows, "
            f"{self.failures} requests failed for good (see ingest_failures)\n"
            f"fan-out: {self.bar_calls:,} bar calls over {self.partitions} partitions x {self.concurrency} in flight "
            f"in {self.fetch_seconds:.1f}s ({cap}); re-running this ds fetches the span again and replaces its dates\n"
            f"{self.actions_summary()}\n"
            f"{self.securities_summary()}"
        )

    def identity_changes(self) -> pd.DataFrame:
        """The renames and delistings the run learned of (lib.ingestion.securities), one row each, by day."""
        rows = [{"date": day, "change": "rename", "ticker": old, "new_ticker": new} for old, new, day in self.renames]
        rows += [{"date": day, "change": "delisting", "ticker": ticker, "new_ticker": None} for ticker, day in self.delistings]
        return pd.DataFrame(rows, columns=["date", "change", "ticker", "new_ticker"]).sort_values(["date", "ticker"],
                                                                                                  ignore_index=True)

    def securities_summary(self) -> str:
        learned = [f"{old} became {new} on {day}" for old, new, day in self.renames]
        learned += [f"{ticker} delisted on {day}" for ticker, day in self.delistings]
        calls = ", ".join(f"{n} {kind}" for kind, n in self.reference_calls.items() if n) or "none"
        text = f"securities: {self.securities:,} ticker periods; reference calls beyond the ticker list: {calls}"
        if learned:
            text += "; learned: " + "; ".join(learned)
        if self.migrated_rows:
            text += f"; {self.migrated_rows:,} stored bars of an earlier version given their security_id"
        return text

    def actions_summary(self) -> str:
        window = f" with ex-dates {self.action_window[0]}..{self.action_window[1]}" if self.action_window else ""
        basis = "split-adjusted by the API (adjusted=true)" if self.adjusted else "as traded (adjusted=false)"
        return (
            f"corporate actions: {self.splits_seen} splits and {self.dividends_seen} cash dividends seen{window}, "
            f"upserted into corporate_actions; bars stored {basis}"
        )


def save_report(config: RunConfig, step: str, report) -> None:
    """A step's report as data in its run record, `<run_dir>/<step>.json`: its plain fields (numbers, names, dates,
    counts by endpoint; not its frames), which the batch runner reads back rather than what the notebook printed."""
    fields = {}
    for field in dataclasses.fields(report):
        value = getattr(report, field.name)
        if isinstance(value, pd.DataFrame | DataFrame) or field.name == "results":
            continue
        fields[field.name] = value
    for name in ("total_calls", "bar_calls"):  # derived figures a reader wants without recomputing them
        if hasattr(report, name):
            fields[name] = getattr(report, name)
    path = Path(config.run_dir) / f"{step}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields, indent=2, default=str))


def run_ingest(spark: SparkSession, config: RunConfig, settings: ClientSettings) -> IngestReport:
    """Tickers for ds, bars for every market day of start_ds..ds, into the daily tables (idempotent), and the splits
    and cash dividends of the action window (fanout.action_window) upserted into corporate_actions.

    Bars are fetched with config.adjusted (default False: as traded, which is what the tables hold; lib.prices adjusts
    on read). A backfill also fetches the tickers delisted during its span, so their history stays.
    """
    started = time.monotonic()
    catalog.ensure_tables(spark, config)
    driver_client = PolygonClient(settings)
    ticker_records = driver_client.tickers(as_of=config.ds)
    if not ticker_records:
        raise ConfigError(
            f"the ticker universe for {config.ds} is empty: the API at {settings.base_url} listed no active stock. "
            "Check api_base_url and your plan, or pick another ds."
        )
    delisted = driver_client.delisted_tickers(config.start_ds, config.ds) if config.start_ds < config.ds else None
    symbols = span_symbols(ticker_records, delisted)
    days = config.span_days
    strategy, reason = fanout.choose_strategy(config.strategy, len(days), len(symbols))
    tasks = fanout.plan_tasks(strategy, days, symbols)
    # The fan-out's first call waits for the driver's next free slot: ticker pages and bars share one cap.
    time.sleep(driver_client.pacer.reserve())
    fetched = fanout.fetch_bars(
        spark, settings, tasks, adjusted=config.adjusted, concurrency=config.concurrency, tickers=len(symbols)
    )

    raw_bars = fanout.with_run_ds(fetched.raw_bars, config.ds)
    catalog.replace_rows(spark, config, "raw_daily_bars", raw_bars, "date", config.start_ds, config.ds)
    written_raw = span_table(spark, config, "raw_daily_bars")
    migration, last_day = _stored_bars(spark, config)
    if migration is not None and delisted is None:  # an earlier version's bars: resolve their span's tickers too
        delisted = driver_client.delisted_tickers(migration, config.ds)
    newest = last_day is None or last_day <= config.ds
    resolution, reference_failures = update_securities(spark, config, driver_client, ticker_records, delisted, newest)
    intervals = identity.intervals(resolution.periods)
    prices = fanout.with_securities(fanout.raw_to_prices(written_raw), intervals)
    catalog.replace_rows(spark, config, "stock_prices", prices, "date", config.start_ds, config.ds)
    migrated_rows = _identify_stored_prices(spark, config, intervals) if migration is not None else 0
    tickers = fanout.tickers_frame(spark, ticker_records, config.ds)
    catalog.replace_rows(spark, config, "stock_tickers", tickers, "ds", config.ds, config.ds)
    failures = fanout.with_run_ds(fanout.with_failures(fetched.failures, reference_failures), config.ds)
    catalog.replace_rows(spark, config, "ingest_failures", failures, "ds", config.ds, config.ds)
    window = fanout.action_window(config.start_ds, config.ds) if days else None
    splits = driver_client.splits(*window) if window else []
    dividends = driver_client.dividends(*window) if window else []
    actions = fanout.actions_frame(spark, splits, dividends, set(symbols))
    if window:
        catalog.merge_corporate_actions(spark, config, actions, config.ds)

    calls = dict(fetched.calls)
    for endpoint in REFERENCE_ENDPOINTS:
        if driver_client.calls[endpoint]:
            calls[endpoint] = driver_client.calls[endpoint]
    retries = dict(fetched.retries)
    for endpoint in REFERENCE_ENDPOINTS:
        if driver_client.retries[endpoint]:
            retries[endpoint] = driver_client.retries[endpoint]
    stored_prices = span_table(spark, config, "stock_prices")
    bars_per_day = stored_prices.groupBy("date").agg(F.count("*").alias("bars")).orderBy("date").toPandas()
    failure_rows = span_table(spark, config, "ingest_failures", column="ds", start=config.ds)
    return IngestReport(
        strategy=strategy,
        reason=reason,
        market_days=days,
        tickers=len(symbols),
        raw_rows=written_raw.count(),
        price_rows=stored_prices.count(),
        failures=failure_rows.count(),
        calls=calls,
        retries=retries,
        seconds=time.monotonic() - started,
        bars_per_day=bars_per_day,
        failure_sample=failure_rows.limit(20).toPandas(),
        fetch_seconds=fetched.seconds,
        partitions=fetched.partitions,
        concurrency=config.concurrency,
        max_calls_per_minute=settings.max_calls_per_minute,
        splits_seen=sum(1 for r in splits if r.get("ticker") in set(symbols)),
        dividends_seen=sum(1 for r in dividends if r.get("ticker") in set(symbols)),
        action_window=window,
        adjusted=config.adjusted,
        securities=len(resolution.periods),
        renames=resolution.renames,
        delistings=resolution.delistings,
        reference_calls=resolution.calls,
        migrated_rows=migrated_rows,
    )


def span_symbols(ds_records: list[dict], delisted: list[dict] | None) -> list[str]:
    """The tickers of the run: those listed on ds and, for a backfill, those delisted during start_ds..ds (listed on
    some day of the span, so their bars before the delisting are fetched too: a ticker renamed away counts, and a
    reused ticker is fetched once, its bars going to each holder by day)."""
    symbols = {r["ticker"] for r in ds_records if r.get("ticker")}
    symbols |= {r["ticker"] for r in delisted or () if r.get("ticker")}
    return sorted(symbols)


def stored_securities(spark: SparkSession, config: RunConfig) -> list[dict]:
    """The securities table as the run sees it, as lib.ingestion.securities' period dicts."""
    frame = catalog.read_table(spark, config, "securities").toPandas()
    return [{c: (None if pd.isna(v) else v) for c, v in row.items()} for row in frame.to_dict("records")]


def security_intervals(spark: SparkSession, config: RunConfig) -> list[tuple]:
    """(ticker, from, until, security_id) of the stored securities (lib.storage.securities.intervals): which
    security traded under a ticker on a day, for joining bars, actions or reads to their security."""
    return identity.intervals(stored_securities(spark, config))


def update_securities(spark: SparkSession, config: RunConfig, client: PolygonClient, listed: list[dict],
                      delisted: list[dict] | None, newest: bool = True) -> tuple[securities.Resolution, list[tuple]]:  # fmt: skip
    """Resolve the run's ticker records against the stored securities and write the table whole (one commit).

    A reference call that fails for good is no reason to stop the run: the period is resolved without its answer (a
    vanished ticker stays current until a later run learns its end; a ticker without a FIGI is named by its ticker
    alone, which later runs keep) and the failure is returned as an ingest_failures row (symbol, endpoint,
    http_status, error, attempts, failed_at)."""
    failures: list[tuple] = []

    def answered(call, endpoint: str, ticker: str, *args):
        try:
            return call(ticker, *args)
        except PolygonRequestFailed as exc:
            failed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            failures.append((ticker, endpoint, exc.http_status, str(exc), exc.attempts, failed_at))
            return None

    resolution = securities.resolve(
        stored_securities(spark, config), listed, delisted, config.ds,
        inactive_records=lambda ticker: answered(lambda t: client.tickers(as_of=config.ds, active=False, ticker=t),
                                                 "tickers", ticker) or [],
        details=lambda ticker, day: answered(client.ticker_details, "ticker_details", ticker, day),
        newest=newest,
    )  # fmt: skip
    rows = [tuple(p[c] for c in identity.COLUMNS) for p in resolution.periods]
    catalog.overwrite_partitions(config, "securities", spark.createDataFrame(rows, catalog.SCHEMAS["securities"]))
    return resolution, failures


def _stored_bars(spark: SparkSession, config: RunConfig) -> tuple[dt.date | None, dt.date | None]:
    """From stock_prices' file metadata only (main, before the run writes): the first day of the data files that may
    hold a bar without security_id (a warehouse of an earlier version: files written before the column existed, or
    with nulls in it), else None; and the last day of a stored bar (None: no bar yet)."""
    files = spark.table(catalog.table_identifier(config, "stock_prices", "files"))
    nulls = F.col("readable_metrics.security_id.null_value_count")
    row = files.agg(
        F.min(F.when(nulls.isNull() | (nulls > 0), F.col("readable_metrics.date.lower_bound"))),
        F.max("readable_metrics.date.upper_bound"),
    ).first()
    return row[0], row[1]


def _identify_stored_prices(spark: SparkSession, config: RunConfig, intervals: list[tuple]) -> int:
    """Give the stored bars without security_id theirs (the migration of an earlier version's warehouse): their months
    rewritten in one commit, the rows otherwise unchanged. Returns how many bars it identified."""
    stored = catalog.read_table(spark, config, "stock_prices")
    missing = F.col("security_id").isNull()
    bounds = stored.filter(missing).agg(F.min("date"), F.max("date"), F.count("*")).first()
    if not bounds[2]:
        return 0
    rows = stored.filter(F.col("date").between(F.lit(bounds[0]), F.lit(bounds[1])))
    identified = fanout.with_securities(rows.filter(missing).drop("security_id"), intervals)
    # replace_rows carries the rest of their months along
    catalog.replace_rows(spark, config, "stock_prices", identified.unionByName(rows.filter(~missing)), "date", *bounds[:2])
    return bounds[2]


def span_table(
    spark: SparkSession, config: RunConfig, name: str, column: str = "date", start: dt.date | None = None
) -> DataFrame:
    """The table's rows with `column` in start..ds (start defaults to start_ds)."""
    start = start or config.start_ds
    return catalog.read_table(spark, config, name).filter(F.col(column).between(F.lit(start), F.lit(config.ds)))


# What each step reads that an earlier one writes, and the notebook that writes it: a notebook opened out of order
# says which to run first before it starts any long work.
_PIPELINE = (("stock_prices", "01_ingest"), ("monthly_stock_prices", "02_monthly_rollup"))


def require_inputs(spark: SparkSession, config: RunConfig, step: str, tables: tuple[str, ...], start: dt.date | None = None):
    """Refuse to run `step` when a table it reads holds nothing for start..ds (a span without market days passes).

    Raises MissingInputError naming the empty table and the notebooks to run first, in order.
    """
    start = start or config.start_ds
    if not trading_days(start, config.ds):
        return
    for name in tables:
        if name == "monthly_stock_prices":

            rows = catalog.read_table(spark, config, name).filter(
                F.col("month_start").between(F.lit(month_start(start)), F.lit(config.ds))
            )
        else:
            rows = span_table(spark, config, name, start=start)
        if not rows.limit(1).count():
            writers = [notebook for _, notebook in _PIPELINE]
            first = writers[: [table for table, _ in _PIPELINE].index(name) + 1]
            raise MissingInputError(
                f"{step} found no rows in {config.table(name)} for {start}..{config.ds}: "
                f"run {' then '.join(first)} for this span first (or the whole pipeline: "
                f"python -m lib.run --start-ds {start} --ds {config.ds})."
            )


@dataclasses.dataclass
class RollupReport:
    months: list[dt.date]
    applied_days: list[dt.date]
    rows_written: int
    symbols: int
    seconds: float
    sample: pd.DataFrame  # symbol, date, metric_name, value: a few symbols' arrays exploded back
    maintenance: dict | None = None  # catalog.maintain's counts, when the run maintained the table

    def summary(self) -> str:
        if not self.applied_days:
            return "no NYSE trading day in the span: no month to update (an empty run)"
        months = ", ".join(m.strftime("%Y-%m") for m in self.months)
        text = (
            f"applied {len(self.applied_days)} market days to {len(self.months)} month(s) ({months}): "
            f"{self.rows_written:,} rows for {self.symbols:,} symbols in {self.seconds:.1f}s"
        )
        if self.maintenance:
            m = self.maintenance
            text += (
                f"; maintenance: data files {m['data_files_before']} -> {m['data_files_after']} "
                f"({m['rewritten_data_files']} compacted), snapshots {m['snapshots_before']} -> {m['snapshots_after']}"
            )
        return text


def run_rollup(
    spark: SparkSession, config: RunConfig, sample_symbols: int = 4, keep_snapshots: int | None = None
) -> RollupReport:
    """Apply the span's market days to the monthly arrays: one pass, one atomic commit (idempotent).

    With `keep_snapshots`, also maintain the table now: compact the months just written when they came out in
    several files, and expire all but the last `keep_snapshots` snapshots (catalog.maintain). By default it does
    not: every run's publish (03_quality, lib.storage.wap.publish) maintains every table once, this one included,
    and expiring here as well cost 1.2 s a run.
    """

    started = time.monotonic()
    catalog.ensure_tables(spark, config)
    require_inputs(spark, config, "02_monthly_rollup", ("stock_prices",))
    days = config.span_days
    months = sorted({monthly.month_start(d) for d in days})
    if not days:
        return RollupReport([], [], 0, 0, time.monotonic() - started, pd.DataFrame())
    wap.rebuild_months(spark, config)
    maintenance = None
    # On an audit branch the table is maintained when 03_quality publishes it (maintenance commits to main).
    if keep_snapshots is not None and not catalog.staged(config, "monthly_stock_prices"):
        written_months = f"month_start >= '{months[0]}' AND month_start <= '{months[-1]}'"
        maintenance = catalog.maintain(spark, config, "monthly_stock_prices", keep_last=keep_snapshots, where=written_months)

    stored = catalog.read_table(spark, config, "monthly_stock_prices").filter(F.col("month_start").isin(months))
    symbols = [r.symbol for r in stored.select("symbol").distinct().orderBy("symbol").limit(sample_symbols).collect()]
    sample = (
        monthly.explode_metrics(stored.filter(F.col("symbol").isin(symbols) & (F.col("metric_name") == "close")),
                                keep_nulls=True)  # fmt: skip
        .orderBy("symbol", "date")
        .toPandas()
    )
    return RollupReport(
        months=months,
        applied_days=days,
        rows_written=stored.count(),
        symbols=stored.select("symbol").distinct().count(),
        seconds=time.monotonic() - started,
        sample=sample,
        maintenance=maintenance,
    )


def _span_months(config: RunConfig) -> list[dt.date]:

    return sorted({month_start(d) for d in config.span_days} | {month_start(config.ds)})


def quality_inputs(spark: SparkSession, config: RunConfig):
    """The tables of the run's span, as the quality checks read them."""

    return QualityInputs(
        raw_daily_bars=span_table(spark, config, "raw_daily_bars"),
        stock_prices=span_table(spark, config, "stock_prices"),
        monthly_stock_prices=catalog.read_table(spark, config, "monthly_stock_prices").filter(
            F.col("month_start").isin(_span_months(config))
        ),
        stock_tickers=span_table(spark, config, "stock_tickers", column="ds", start=config.ds),
        ingest_failures=span_table(spark, config, "ingest_failures", column="ds", start=config.ds),
        price_context=_price_context(spark, config),
        corporate_actions=_corporate_actions(spark, config),
        minute_bars=_minute_bars(spark, config),
    )


def _minute_bars(spark: SparkSession, config: RunConfig) -> DataFrame | None:
    """minute_bars of the span's days (lib.stream); None when the warehouse has no such table (nothing to compare)."""
    from pyspark.errors import AnalysisException

    first = dt.datetime.combine(config.start_ds - dt.timedelta(days=1), dt.time())  # UTC instants around NY days
    last = dt.datetime.combine(config.ds + dt.timedelta(days=2), dt.time())
    try:
        return catalog.read_table(spark, config, "minute_bars").filter(
            F.col("window_start").between(F.lit(first), F.lit(last))
        )
    except AnalysisException:
        return None


def _corporate_actions(spark: SparkSession, config: RunConfig) -> DataFrame:
    """The whole corporate_actions table (small); empty when a warehouse does not have it yet: nothing to judge."""
    from pyspark.errors import AnalysisException

    try:
        return catalog.read_table(spark, config, "corporate_actions")
    except AnalysisException:
        return spark.createDataFrame([], catalog.SCHEMAS["corporate_actions"])


def _price_context(spark: SparkSession, config: RunConfig) -> DataFrame:
    """stock_prices from a little before the span's months through their end (lib.quality.checks.QualityInputs.price_context)."""

    months = _span_months(config)
    after_last_month = (months[-1] + dt.timedelta(days=32)).replace(day=1)
    return catalog.read_table(spark, config, "stock_prices").filter(
        (F.col("date") >= F.lit(months[0] - dt.timedelta(days=PRICE_CONTEXT_DAYS))) & (F.col("date") < F.lit(after_last_month))
    )


def rollup_checks(spark: SparkSession, config: RunConfig) -> list:
    """The monthly table's own guarantees over the span: unique keys and arrays that reconcile with prices."""

    inputs = quality_inputs(spark, config)
    only_monthly = checks.QualityInputs(
        monthly_stock_prices=inputs.monthly_stock_prices, stock_prices=inputs.stock_prices, price_context=inputs.price_context
    )
    results = checks.run_checks(only_monthly, config.ds, config.span_days, config.quality,
                                 only=["duplicates", "array_integrity"])  # fmt: skip
    checks.release(results)  # only the statuses and details are read; see run_quality
    return [r for r in results if r.table_name == "monthly_stock_prices"]


@dataclasses.dataclass
class QualityReport:
    results: list  # lib.quality.checks.CheckResult
    table: pd.DataFrame  # this run's checks
    history: pd.DataFrame  # ds, check_name, table_name, status over recent runs
    coverage: pd.DataFrame  # symbol, date, has_bar from the exploded close arrays
    failing_rows: dict[str, pd.DataFrame]  # "check on table" -> a sample of its failing rows

    @property
    def failed(self) -> list:
        return [r for r in self.results if r.status == "fail"]

    def summary(self) -> str:
        failed = ", ".join(f"{r.name} on {r.table_name} ({r.severity}, {r.failed_rows})" for r in self.failed)
        return f"{len(self.results)} checks, {len(self.failed)} failed" + (f": {failed}" if failed else "")


def run_quality(spark: SparkSession, config: RunConfig, history_runs: int = 30, coverage_symbols: int = 40):
    """Run every check over the span and record them in quality_results (replacing this ds's rows).

    The gate is separate (`lib.quality.gate.enforce_gate`), so a notebook draws its figures before it stops a run.
    """

    catalog.ensure_tables(spark, config)
    require_inputs(spark, config, "03_quality", ("stock_prices", "monthly_stock_prices"))
    results = checks.run_checks(quality_inputs(spark, config), config.ds, config.span_days, config.quality)
    checked_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    frame = gate.results_frame(spark, results, config.ds, checked_at)
    catalog.replace_rows(spark, config, "quality_results", frame, "ds", config.ds, config.ds)

    table = pd.DataFrame(
        [(r.name, r.table_name, r.severity, r.status, r.failed_rows, r.details) for r in results],
        columns=["check_name", "table_name", "severity", "status", "failed_rows", "details"],
    )
    recent = (
        catalog.read_table(spark, config, "quality_results")
        .filter(F.col("ds") <= F.lit(config.ds))
        .select("ds").distinct().orderBy(F.col("ds").desc()).limit(history_runs)
    )  # fmt: skip
    history = (
        catalog.read_table(spark, config, "quality_results")
        .join(recent, "ds")
        .select("ds", "check_name", "table_name", "status", "severity")
        .orderBy("ds", "check_name", "table_name")
        .toPandas()
    )
    span_monthly = quality_inputs(spark, config).monthly_stock_prices.filter(F.col("metric_name") == "close")
    symbols = span_monthly.select("symbol").distinct().orderBy("symbol").limit(coverage_symbols)
    coverage = (
        monthly.explode_metrics(span_monthly.join(symbols, "symbol"), keep_nulls=True)
        .filter(F.col("date").between(F.lit(config.start_ds), F.lit(config.ds)))
        .select("symbol", "date", F.col("value").isNotNull().alias("has_bar"))
        .orderBy("symbol", "date")
        .toPandas()
    )
    failing_rows = {f"{r.name} on {r.table_name}": r.failures.limit(10).toPandas() for r in results if r.status == "fail"}
    # The failures frames stay cached until released: a cached plan over an audit branch outlives the branch
    # (03 drops it when publishing), and Spark's cache refresh after a later write would scan it again.
    checks.release(results)
    return QualityReport(results, table, history, coverage, failing_rows)


def publish(spark: SparkSession, config: RunConfig, report: QualityReport) -> wap.PublishReport:
    """The gate, then the publish: raise QualityGateError when an error-severity check failed (main untouched, the
    audit branch kept, the message says how to inspect, publish or drop it); else publish the run's branch to main
    and tag it run-<ds> (lib.wap.publish; with no wap_branch, main is only tagged)."""

    advice = wap.inspect_hint(config) if wap.staged_tables(spark, config) else ""
    gate.enforce_gate(report.results, config.ds, advice=advice)
    return wap.publish(spark, config)


@dataclasses.dataclass
class TrendsReport:
    symbols: list[str]
    start: dt.date
    end: dt.date
    # The chosen securities' frames name each security by the symbol it was chosen under (a ticker of config.symbols,
    # or a leader's ticker on ds), whatever tickers it traded as in the span, and carry its security_id.
    daily: pd.DataFrame  # symbol, date, close, volume, returns, ma_*, rolling_volatility, drawdown, volume_z, is_anomaly
    monthly_returns: pd.DataFrame  # symbol, month_start, first_close, last_close, monthly_return (chosen symbols)
    top_movers: pd.DataFrame  # month_start, direction, rank, symbol, monthly_return (all securities, last ticker)
    max_drawdown: pd.DataFrame  # symbol, max_drawdown
    correlations: pd.DataFrame  # symbols x symbols
    adjust: str = "raw"  # the series analysed: raw, split or total_return (lib.prices)
    summary_table: pd.DataFrame | None = None  # the chosen symbols' trend_summary rows of this ds

    def summary(self) -> str:
        return (
            f"{len(self.symbols)} symbols ({', '.join(self.symbols)}) over {self.start}..{self.end}, {self.adjust} prices: "
            f"{len(self.daily):,} daily rows, {int(self.daily['is_anomaly'].fillna(False).sum()) if len(self.daily) else 0} "
            "volume anomalies"
        )


# Calendar days read before a span so that every ex-date in it has its previous bar (the dividend's P).
_BAR_BEFORE_DAYS = 10
# Calendar days of warm-up 04_trends reads before its span for the windowed measures: the longest window, the
# 200-bar moving average, needs 199 bars before the span's first day, about 290 calendar days with the holidays.
_TREND_WARM_UP_DAYS = 320


def trend_daily_rows(spark: SparkSession, config: RunConfig, start: dt.date, adjust: str = "raw") -> DataFrame:
    """Daily rows from start..ds, read by exploding the monthly arrays (the table analysts query), with the
    security_id of each bar (the securities table's, by ticker and day: the arrays are by ticker), adjusted as
    lib.prices does (`raw`, `split` or `total_return`) per security with the corporate actions known by ds."""
    config = wap.on_main(config)  # analysis reads main: only published, audited data

    read_from = start - dt.timedelta(days=_BAR_BEFORE_DAYS) if adjust != "raw" else start
    months = catalog.read_table(spark, config, "monthly_stock_prices").filter(
        F.col("month_start").between(F.lit(monthly.month_start(read_from)), F.lit(config.ds))
    )
    daily = monthly.daily_rows(months).filter(
        F.col("date").between(F.lit(read_from), F.lit(config.ds))
    )
    intervals = security_intervals(spark, config)
    daily = fanout.with_securities(daily, intervals)
    if adjust != "raw":
        daily = prices.adjust_frame(daily, _security_actions(spark, config, intervals), adjust, as_of=config.ds,
                                    key="security_id")  # fmt: skip
    return daily.filter(F.col("date") >= F.lit(start))


def _security_actions(spark: SparkSession, config: RunConfig, intervals: list[tuple] | None = None) -> DataFrame:
    """corporate_actions with the security_id of each action: the security that held its ticker on the ex-date (an
    action is announced under the ticker of its day; it adjusts its security's bars under any ticker)."""
    intervals = security_intervals(spark, config) if intervals is None else intervals
    actions = _corporate_actions(spark, config)
    return fanout.with_securities(actions.withColumn("date", F.col("ex_date")), intervals).drop("date")


def resolve_symbols(spark: SparkSession, config: RunConfig, symbols: list[str], start: dt.date, end: dt.date) -> dict:
    """{ticker: security_id} for a read of `symbols` over start..end (the contract's reads by ticker): the security that
    held each on the last day of the span it was held (an old ticker finds its security); a ticker the securities
    table never had is its own security, as its bars' security_id is."""
    return identity.resolve(stored_securities(spark, config), symbols, start, end)


def _names_frame(spark: SparkSession, named: dict) -> DataFrame:
    """security_id, label: the name each chosen security is shown under (small, broadcast where joined)."""
    return spark.createDataFrame([(security_id, label) for label, security_id in named.items()],
                                 "security_id string, label string")  # fmt: skip


def _labelled(frame: DataFrame, names: DataFrame) -> DataFrame:
    """`frame`'s rows of the named securities, their symbol the name chosen (security_id kept)."""
    return frame.drop("symbol").join(F.broadcast(names), "security_id").withColumnRenamed("label", "symbol")


def run_trends(
    spark: SparkSession, config: RunConfig, lookback_days: int = 365, volatility_window: int = 20, anomaly_z: float = 3.5
) -> TrendsReport:
    """The analytics of 04_trends, computed in Spark; only small per-symbol aggregates come back as pandas.

    The figures cover start_ds..ds and at least the lookback_days before ds. The symbols drawn are config.symbols or
    the top_n leaders of ds (leaders_by_day), and trend_summary of ds covers the lookback_days up to it: both are
    functions of ds and the stored bars, so a daily run and a backfill write the same.
    """
    config = wap.on_main(config)  # analysis reads main: only published, audited data

    start = min(config.start_ds, config.ds - dt.timedelta(days=lookback_days))
    catalog.ensure_tables(spark, config)
    require_inputs(spark, config, "04_trends", ("monthly_stock_prices",), start=start)
    daily = trend_daily_rows(spark, config, start, config.adjust).cache()
    if config.symbols:
        named = resolve_symbols(spark, config, list(config.symbols), start, config.ds)
    else:
        leaders = leaders_by_day(spark, config, [last_trading_day_on_or_before(config.ds)], config.top_n)
        named = {r.symbol: r.security_id for r in leaders.orderBy(F.desc("dollar_volume"), "symbol").collect()}
    first_names = {}  # one name per security: the first it was asked for under
    for label, security_id in named.items():
        first_names.setdefault(security_id, label)
    named = {label: security_id for security_id, label in first_names.items()}
    symbols, chosen_ids = list(named), list(named.values())
    names = _names_frame(spark, named)
    chosen = daily.filter(F.col("security_id").isin(chosen_ids))
    windowed = trend_windows(spark, config, chosen, start, chosen_ids, volatility_window, anomaly_z)
    ma_columns = [c for c in windowed.columns if c.startswith("ma_")]
    # Returns and drawdowns are the span's own (from its first bar); the windowed measures come with their warm-up.
    per_day = trends.drawdowns(trends.with_returns(chosen)).join(
        windowed.select("security_id", "date", *ma_columns, "rolling_volatility", "volume_z", "is_anomaly"),
        ["security_id", "date"],
    )
    daily_pd = _labelled(per_day, names).select(
        "symbol", "date", "close", "volume", "daily_return", "cumulative_return", *ma_columns,
        "rolling_volatility", "running_peak", "drawdown", "volume_z", "is_anomaly", "security_id",
    ).orderBy("symbol", "date").toPandas()  # fmt: skip
    all_monthly_returns = trends.monthly_returns(daily)
    chosen_monthly = _labelled(all_monthly_returns, names).select(
        "symbol", "month_start", "first_close", "last_close", "monthly_return", "security_id"
    )
    report = TrendsReport(
        symbols=symbols,
        start=start,
        end=config.ds,
        daily=daily_pd,
        monthly_returns=chosen_monthly.orderBy("symbol", "month_start").toPandas(),
        top_movers=trends.top_movers(all_monthly_returns, n=5).toPandas(),
        max_drawdown=_labelled(trends.max_drawdown(chosen), names).select("symbol", "max_drawdown", "security_id")
        .orderBy("max_drawdown").toPandas(),
        correlations=trends.return_correlations(_labelled(chosen, names), symbols),
        adjust=config.adjust,
    )  # fmt: skip
    # trend_summary of a ds covers the lookback_days up to it, whatever the span: a function of the day.
    summary = (
        trends.trend_summary(daily.filter(F.col("date") >= F.lit(config.ds - dt.timedelta(days=lookback_days))))
        .withColumn("ds", F.lit(config.ds))
        .withColumn("adjust", F.lit(config.adjust))
        .select(*catalog.SCHEMAS["trend_summary"].names)
    )
    catalog.replace_rows(spark, config, "trend_summary", summary, "ds", config.ds, config.ds)
    report.summary_table = (
        _labelled(summary, names).select(*catalog.SCHEMAS["trend_summary"].names).orderBy("symbol").toPandas()
    )
    daily.unpersist()
    return report


def trend_windows(
    spark: SparkSession,
    config: RunConfig,
    chosen: DataFrame,
    start: dt.date,
    security_ids: list[str],
    volatility_window: int = 20,
    anomaly_z: float = 3.5,
) -> DataFrame:
    """The rows of `chosen` (symbol, security_id, date, close, volume over start..ds) with ma_*, rolling_volatility,
    volume_z and is_anomaly computed per security over the bars of `security_ids` of the _TREND_WARM_UP_DAYS before
    start as well (under any ticker), read through adjusted_history (config.adjust, actions known by ds). No row
    before start comes back.

    So a 200-bar moving average on start is a full window when the history exists (and null when it does not).
    """

    bars = ["symbol", "security_id", "date", "close", "volume"]
    warm_up = adjusted_history(
        spark, config, config.adjust, start=start - dt.timedelta(days=_TREND_WARM_UP_DAYS), security_ids=security_ids
    ).filter(F.col("date") < F.lit(start))
    history = warm_up.select(*bars).unionByName(chosen.select(*bars))
    windowed = trends.volume_anomalies(trends.moving_averages(trends.rolling_volatility(history, volatility_window)), z=anomaly_z)
    return windowed.filter(F.col("date") >= F.lit(start))


# --------------------------------------------------------------------------------------------- analysis tables


def adjusted_history(
    spark: SparkSession,
    config: RunConfig,
    adjust: str,
    start: dt.date | None = None,
    security_ids: list[str] | None = None,
    through: dt.date | None = None,
) -> DataFrame:
    """stock_prices from `start` (default: the first bar) through `through` (default ds), bars with a close only (of
    `security_ids` when given), adjusted per security as lib.prices does with the actions known by that day
    (`adjust`: raw, split or total_return; volume divided by the split factor): an action applies to every bar of the
    security that held its ticker on its ex-date, under whatever ticker it traded. security_id is never null: a bar
    stored without one (an earlier version's, not yet given it) is its ticker's."""
    config = wap.on_main(config)  # analysis reads main: only published, audited data
    through = through or config.ds
    daily = (
        catalog.read_table(spark, config, "stock_prices")
        .filter((F.col("date") <= F.lit(through)) & F.col("close").isNotNull())
        .withColumn("security_id", _security_of_bar())
    )
    if start is not None:
        daily = daily.filter(F.col("date") >= F.lit(start))
    if security_ids is not None:
        daily = daily.filter(F.col("security_id").isin(list(security_ids)))
    return prices.adjust_frame(daily, _security_actions(spark, config), adjust, as_of=through, key="security_id")


@dataclasses.dataclass
class Restatement:
    """The days an analysis run (re)writes: its span, and what a split it learns of changes before it.

    Analysis tables are stored in the basis of the warehouse's last bar (`through`, on or after ds): a run of a past
    day writes its rows as a range run over the whole warehouse would, and rewrites the days after it, which its
    bars may change (late data). A split whose ex-date falls in the span, or that the run saw first, puts every
    earlier row of its security (under any ticker) in another basis: those securities' whole history is rewritten
    (`start` goes back to their first bar).
    """

    start: dt.date
    through: dt.date
    security_ids: list[str]  # the securities restated from their first bar


def restatement(spark: SparkSession, config: RunConfig) -> Restatement:
    """The days and securities an analysis run of config rewrites (see Restatement)."""
    config = wap.on_main(config)
    stored = catalog.read_table(spark, config, "stock_prices")
    through = max(config.ds, stored.agg(F.max("date")).first()[0] or config.ds)
    span = (F.col("ex_date").between(F.lit(config.start_ds), F.lit(config.ds))
            | F.col("first_seen_ds").between(F.lit(config.start_ds), F.lit(config.ds)))  # fmt: skip
    splits = _security_actions(spark, config).filter(
        (F.col("action_type") == "split") & (F.col("ex_date") <= F.lit(through)) & span
    )
    security_ids = sorted({r.security_id for r in splits.select("security_id").distinct().collect()})
    start = config.start_ds
    if security_ids:
        first = stored.filter(_security_of_bar().isin(security_ids)).agg(F.min("date")).first()[0]
        start = min(start, first or start)
    return Restatement(start, through, security_ids)


def _security_of_bar():
    """A stored row's security: its security_id, or its ticker when it has none (an earlier version's row)."""
    return F.coalesce(F.col("security_id"), F.col("symbol"))


@dataclasses.dataclass
class IndicatorsReport:
    rows: int
    symbols: int  # securities (a security's series runs on across its tickers)
    seconds: float
    from_first_bar: int = 0  # securities folded from their first bar (no usable stored state)

    def summary(self) -> str:
        return (
            f"technical_indicators: {self.rows:,} rows for {self.symbols:,} securities in {self.seconds:.1f}s "
            f"({self.from_first_bar:,} folded from their first bar, the others from their stored state)"
        )


def run_indicators(spark: SparkSession, config: RunConfig) -> IndicatorsReport:
    """technical_indicators for the span's trading days (and what `restatement` adds), idempotent.

    The recursions (Wilder, EMA, OBV) run per security from its first stored bar, across its ticker changes (a
    reused ticker's new company starts from nothing), so a day's values do not depend on the span that computed them:
    a daily run and a backfill write the same numbers. A daily run does not fold the whole history again: it continues
    from the fold's state stored with each security's row of its last bar before the span, reading only the bars the
    bands' window needs before the span. A security without a usable state (a split to restate, a warehouse written
    before the state or security_id was stored, a halt longer than the window read, a day whose indicators were never
    computed) is folded from its first bar; a security whose first bar is in the span simply starts there.
    """
    config = wap.on_main(config)  # analysis reads main: only published, audited data

    started = time.monotonic()
    catalog.ensure_tables(spark, config)
    require_inputs(spark, config, "indicators", ("stock_prices",))
    days = restatement(spark, config)
    start, through = config.start_ds, days.through
    window_from = start - dt.timedelta(days=_INDICATOR_WINDOW_DAYS)
    history = adjusted_history(spark, config, "split", start=window_from, through=through).cache()
    stored = catalog.read_table(spark, config, "technical_indicators")
    before = Window.partitionBy("security_id").orderBy(F.col("date").desc())
    searched = (start - dt.timedelta(days=_INDICATOR_STATE_DAYS), start - dt.timedelta(days=1))
    # A stored row without security_id (an earlier version's) carries no usable state: its security is folded afresh.
    prior = (
        stored.filter(F.col("date").between(F.lit(searched[0]), F.lit(searched[1])) & F.col("security_id").isNotNull())
        .withColumn("_latest", F.row_number().over(before)).filter("_latest = 1").drop("_latest")
    )  # fmt: skip
    seen = history.filter(F.col("date") < F.lit(start)).groupBy("security_id").agg(
        F.max("date").alias("last_bar"), F.count(F.lit(1)).alias("bars_before")
    )
    restated = spark.createDataFrame([(s,) for s in days.security_ids], "security_id string")
    usable = (
        prior.join(seen, "security_id")
        .filter((F.col("date") == F.col("last_bar")) & F.col("bar_number").isNotNull()
                & (F.col("bars_before") >= F.least(F.lit(indicators.BB_PERIOD - 1), F.col("bar_number") + 1)))
        .join(restated, "security_id", "left_anti")
        .select("security_id", *indicators.STATE_COLUMNS)
    )  # fmt: skip
    usable = usable.localCheckpoint(eager=True)  # read by three plans below; small (a row per security)
    in_span = history.filter(F.col("date") >= F.lit(start)).select("security_id").distinct()
    others = in_span.join(usable.select("security_id"), "security_id", "left_anti").join(restated, "security_id", "left_anti")
    # A security with no bar before the window read has its whole history there; one with older bars (or a bar in the
    # window but no usable state) is folded from its first bar. Usually few: the older bars are looked up only for them
    # (a scan of the history before the window, which a daily run otherwise never reads).
    candidates = others.join(seen.select("security_id", F.lit(True).alias("in_window")), "security_id", "left").collect()
    unsure = sorted(r.security_id for r in candidates if not r.in_window)
    older = set()
    if unsure:
        before_window = catalog.read_table(spark, config, "stock_prices").filter(
            (F.col("date") < F.lit(window_from)) & _security_of_bar().isin(unsure)
        )
        older = {r.security_id for r in before_window.select(_security_of_bar().alias("security_id")).distinct().collect()}
    fresh = spark.createDataFrame([(s,) for s in unsure if s not in older], "security_id string")
    from_first_bar = sorted({r.security_id for r in candidates if r.in_window} | older | set(days.security_ids))
    with_state = history.join(F.broadcast(usable.select("security_id")), "security_id", "left_semi")
    parts = [
        indicators.technical_indicators(with_state, usable, start),
        indicators.technical_indicators(history.join(F.broadcast(fresh), "security_id", "left_semi")),
    ]
    refolded = None
    if from_first_bar:
        whole = adjusted_history(spark, config, "split", security_ids=from_first_bar, through=through)
        refolded = indicators.technical_indicators(whole).filter(
            (F.col("date") >= F.lit(start)) | F.col("security_id").isin(list(days.security_ids))).cache()  # fmt: skip
        parts.append(refolded)
    if days.start < start:  # the restated securities' earlier rows: the other securities' rows of those days are kept
        # By (symbol, date), which a day's rows are unique on: a stored row of an earlier version has no security_id.
        rewritten = refolded.filter(F.col("date") < F.lit(start)).select("symbol", "date")
        parts.append(stored.filter(F.col("date").between(F.lit(days.start), F.lit(start - dt.timedelta(days=1))))
                     .join(rewritten, ["symbol", "date"], "left_anti"))  # fmt: skip
    values = parts[0]
    for part in parts[1:]:  # the same columns: the indicators with their state, as the table stores them
        values = values.unionByName(part)
    # Checkpointed: replace_rows reads its frame twice (the range check, the write).
    values = values.filter(F.col("date").between(F.lit(days.start), F.lit(through))).localCheckpoint(eager=True)
    history.unpersist()
    if refolded is not None:
        refolded.unpersist()
    catalog.replace_rows(spark, config, "technical_indicators", values, "date", days.start, through)
    written = span_table(spark, config, "technical_indicators")
    return IndicatorsReport(written.count(), written.select(_security_of_bar()).distinct().count(),
                            time.monotonic() - started, len(from_first_bar))  # fmt: skip


# Calendar days of bars read before a run's first day: the bands' window (BB_PERIOD - 1 bars) and the previous
# close, with room for holidays and short halts. A symbol with fewer bars there is folded from its first bar.
_INDICATOR_WINDOW_DAYS = 60
# Calendar days searched back for a symbol's last stored row (its fold state).
_INDICATOR_STATE_DAYS = 120


@dataclasses.dataclass
class AnomaliesReport:
    anomalies: pd.DataFrame  # the span's rows of the anomalies table
    seconds: float

    def summary(self) -> str:
        counts = self.anomalies["kind"].value_counts().to_dict() if len(self.anomalies) else {}
        return f"{len(self.anomalies)} anomalies {counts} in {self.seconds:.1f}s"


def run_anomalies(
    spark: SparkSession, config: RunConfig, thresholds: dict[str, float] | None = None, window: int | None = None
) -> AnomaliesReport:
    """Flag the span's return, gap and volume anomalies on the total-return series into `anomalies` (idempotent),
    per security: a ticker change continues a series, a reused ticker's first bar starts one.

    `thresholds` ({"return": 5.0, ...}, |robust z| above which a day is flagged) and `window` (trailing bars)
    default to lib.analytics.anomalies.DEFAULT_THRESHOLDS and DEFAULT_WINDOW.
    """
    config = wap.on_main(config)  # analysis reads main: only published, audited data

    started = time.monotonic()
    window = window or anomalies.DEFAULT_WINDOW
    catalog.ensure_tables(spark, config)
    require_inputs(spark, config, "anomalies", ("stock_prices",))
    days = restatement(spark, config)
    # `window` trading bars before the first day written, and a margin for holidays and missing bars.
    history = adjusted_history(spark, config, "total_return", start=days.start - dt.timedelta(days=2 * window + 30),
                               through=days.through)  # fmt: skip
    flagged = (
        anomalies.flag(anomalies.robust_scores(history, window=window, since=days.start), thresholds)
        .filter(F.col("date").between(F.lit(days.start), F.lit(days.through)))
        .withColumn("ds", F.lit(config.ds))
        .localCheckpoint(eager=True)  # scored once: replace_rows reads its frame twice, the flagged rows are few
    )
    catalog.replace_rows(spark, config, "anomalies", flagged, "date", days.start, days.through)
    stored = span_table(spark, config, "anomalies").orderBy("date", "symbol", "kind").toPandas()
    return AnomaliesReport(stored, time.monotonic() - started)


@dataclasses.dataclass
class ForecastReport:
    symbols: list[str]
    forecasts: pd.DataFrame  # this run's forecasts table rows
    metrics: pd.DataFrame  # this ds's forecast_metrics rows
    closes: pd.DataFrame  # symbol, date, close, security_id: the forecast series over the span and a little before
    seconds: float
    # symbol, model, origin_date, horizon of the stored forecasts this ds's metrics scored (every model's, before the
    # common set is taken): a daily run scores earlier runs' forecasts, so its own rows are not what it scored
    scored: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    # the stored forecasts of the last origin's securities whose origin lies in closes' days: what the figure draws
    # (a daily run's own forecasts all lie ahead of the closes)
    recent: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    def beats_naive(self) -> pd.DataFrame:
        """model, horizon, skill_vs_naive for the models whose MAE is below naive's."""
        scored = self.metrics[(self.metrics["model"] != "naive") & (self.metrics["skill_vs_naive"] > 0)]
        return scored[["model", "horizon", "n", "skill_vs_naive"]].sort_values(["model", "horizon"])

    def summary(self) -> str:
        known = int(self.forecasts["actual_close"].notna().sum()) if len(self.forecasts) else 0
        winners = self.beats_naive()
        verdict = (
            "no model beats naive out of sample"
            if winners.empty
            else "beats naive (MAE) out of sample: "
            + ", ".join(f"{r.model} h={r.horizon} ({r.skill_vs_naive:+.1%})" for r in winners.itertuples())
        )
        return (
            f"{len(self.forecasts):,} forecasts for {len(self.symbols)} symbols, {known:,} with a known actual; "
            f"{verdict} ({self.seconds:.1f}s)"
        )


def run_forecast(spark: SparkSession, config: RunConfig) -> ForecastReport:
    """Walk-forward forecasts for the origins of start_ds..ds at horizons 1..horizon_days, and the scores of ds.

    Per security: a forecast reads its security's bars under every ticker, and its row keeps the ticker traded on the
    origin date. At each origin the securities are those of config.symbols (resolve_symbols over start_ds..ds: an old
    ticker finds its security) or the top_n by dollar volume over the 20 sessions up to it (leaders_by_day), and the
    linear model of a month learns from the leaders of its cutoff session: a forecast is a
    function of its origin and the stored bars, never of the span. Forecasts are stored in the origin's basis
    (forecast.origin_factors). The run writes its origins and fills actual_close of the earlier forecasts whose
    targets are days it brought (start_ds..ds), in one replace of their origins. forecast_metrics of ds scores every
    stored forecast whose target is on or before ds and whose origin lies in the FORECAST_SCORE_DAYS before it.
    """
    config = wap.on_main(config)  # analysis reads main: only published, audited data

    started = time.monotonic()
    catalog.ensure_tables(spark, config)
    require_inputs(spark, config, "05_forecast", ("stock_prices",))
    origins = config.span_days
    cutoffs = {forecast.model_cutoff(o) for o in origins}
    cutoff_sessions = {c: last_trading_day_on_or_before(c) for c in cutoffs}
    leaders = _chosen_symbols(spark, config, sorted(set(origins) | set(cutoff_sessions.values()) - {None}))
    by_day: dict[dt.date, list[str]] = {}  # the securities chosen on a day
    names: dict[dt.date, list[str]] = {}  # and the names they were chosen under
    for row in leaders.collect():
        by_day.setdefault(row.day, []).append(row.security_id)
        names.setdefault(row.day, []).append(row.symbol)
    chosen = spark.createDataFrame([(o, s) for o in origins for s in by_day.get(o, [])],
                                   "origin_date date, security_id string")  # fmt: skip
    trainers = {cutoff: by_day.get(session, []) for cutoff, session in cutoff_sessions.items()}

    # A stored forecast without security_id (an earlier version's) is its ticker's.
    stored = catalog.read_table(spark, config, "forecasts").withColumn("security_id", _security_of_bar())
    # Earlier forecasts whose targets this run brought: their origins are rewritten with the actuals filled.
    refill = stored.filter((F.col("origin_date") < F.lit(config.start_ds)) & F.col("target_date").between(
        F.lit(config.start_ds), F.lit(config.ds)))  # fmt: skip
    first_refill = refill.agg(F.min("origin_date")).first()[0]
    carried = (
        stored.filter(F.col("origin_date").between(F.lit(first_refill), F.lit(config.start_ds - dt.timedelta(days=1))))
        if first_refill else stored.limit(0)
    ).cache()  # fmt: skip
    security_ids = sorted(set(security_id for chosen_ids in by_day.values() for security_id in chosen_ids)
                          | {r.security_id for r in carried.select("security_id").distinct().collect()})  # fmt: skip
    traded = (
        catalog.read_table(spark, config, "stock_prices")
        .withColumn("security_id", _security_of_bar())
        .filter(F.col("security_id").isin(security_ids) & F.col("close").isNotNull())
    )
    last_bar = traded.agg(F.max("date")).first()[0] or config.ds
    # Adjusted per security with every action known through the last stored bar (on or after ds): the basis cancels
    # out (origin_factors), and targets after ds that a re-run of a past day finds stored get their actual too.
    series = prices.adjust_frame(traded, _security_actions(spark, config), config.adjust, as_of=last_bar,
                                 key="security_id").cache()  # fmt: skip
    factors = forecast.origin_factors(series, traded)
    predicted = forecast.walk_forward(spark, series, config.start_ds, config.ds, config.horizon_days, chosen, trainers)
    made = forecast.with_actuals(forecast.in_origin_basis(predicted, factors), series, factors)
    rows = made.withColumn("ds", F.lit(config.ds)).unionByName(forecast.with_actuals(carried, series, factors))
    catalog.replace_rows(spark, config, "forecasts", rows, "origin_date", first_refill or config.start_ds, config.ds)
    carried.unpersist()

    stored = catalog.read_table(spark, config, "forecasts")
    scored_from = config.ds - dt.timedelta(days=FORECAST_SCORE_DAYS)
    to_score = stored.filter((F.col("target_date") <= F.lit(config.ds)) & (F.col("origin_date") > F.lit(scored_from)))
    scores = forecast.metrics(to_score).withColumn("ds", F.lit(config.ds))
    catalog.replace_rows(spark, config, "forecast_metrics", scores, "ds", config.ds, config.ds)
    written = stored.filter(F.col("origin_date").between(F.lit(config.start_ds), F.lit(config.ds)))
    drawn_from = config.start_ds - dt.timedelta(days=45)
    last_chosen = by_day.get(origins[-1], []) if origins else []
    closes = (
        series.filter(F.col("date").between(F.lit(drawn_from), F.lit(config.ds)))
        .filter(F.col("security_id").isin(last_chosen))
        .select("symbol", "date", "close", "security_id")
        .orderBy("symbol", "date")
        .toPandas()
    )
    recent = (
        stored.withColumn("security_id", _security_of_bar())
        .filter(F.col("origin_date").between(F.lit(drawn_from), F.lit(config.ds)) & F.col("security_id").isin(last_chosen))
        .orderBy("symbol", "model", "origin_date", "horizon")
        .toPandas()
    )
    report = ForecastReport(
        symbols=names.get(origins[-1], []) if origins else [],
        forecasts=written.orderBy("symbol", "model", "origin_date", "horizon").toPandas(),
        metrics=span_table(spark, config, "forecast_metrics", column="ds", start=config.ds)
        .orderBy("model", "horizon")
        .toPandas(),
        closes=closes,
        seconds=time.monotonic() - started,
        scored=to_score.filter(F.col("actual_close").isNotNull()).select("symbol", "model", "origin_date", "horizon")
        .toPandas(),
        recent=recent,
    )
    series.unpersist()
    return report


# forecast_metrics of a ds scores the stored forecasts whose origin lies in the year before it.
FORECAST_SCORE_DAYS = 365


def leaders_by_day(spark: SparkSession, config: RunConfig, days: list[dt.date], n: int) -> DataFrame:
    """trends.leaders_by_day over stock_prices as traded, per security (day, symbol, dollar_volume, security_id; symbol
    the ticker it traded as on the day): the bounded read of the sessions it needs."""
    days = [d for d in days if d is not None]
    stored = catalog.read_table(spark, config, "stock_prices").withColumn("security_id", _security_of_bar())
    if not days:
        return trends.leaders_by_day(stored, days, n)
    bars = stored.filter(
        F.col("date").between(F.lit(min(days) - dt.timedelta(days=2 * trends.LEADER_SESSIONS + 14)), F.lit(max(days)))
    )
    return trends.leaders_by_day(bars, days, n)


def _chosen_symbols(spark: SparkSession, config: RunConfig, days: list[dt.date]) -> DataFrame:
    """day, symbol, security_id: config.symbols on every day (each the security resolve_symbols finds over
    start_ds..ds, under the name asked for; one name per security), or the top_n leaders of each day."""
    if config.symbols:
        named = {}
        for symbol, security_id in resolve_symbols(spark, config, list(config.symbols), config.start_ds, config.ds).items():
            named.setdefault(security_id, symbol)
        return spark.createDataFrame([(d, s, i) for d in days for i, s in named.items()],
                                     "day date, symbol string, security_id string")  # fmt: skip
    return leaders_by_day(spark, config, days, config.top_n).drop("dollar_volume")


def indicator_sample(spark: SparkSession, config: RunConfig, symbols: list[str], start: dt.date | None = None) -> pd.DataFrame:
    """symbol, date, the split-adjusted close and the stored technical_indicators of `symbols` over start..ds
    (start defaults to start_ds): the frame plots.indicator_panels draws. Each ticker reads its security
    (resolve_symbols) under every ticker it traded as in the span; its rows are named by the ticker asked for."""
    config = wap.on_main(config)  # analysis reads main: only published, audited data
    start = start or config.start_ds
    named = {}
    for symbol, security_id in resolve_symbols(spark, config, list(symbols), start, config.ds).items():
        named.setdefault(security_id, symbol)
    names = _names_frame(spark, {label: security_id for security_id, label in named.items()})
    closes = adjusted_history(spark, config, "split", start=start, security_ids=list(named))
    closes = closes.select("security_id", "date", "close")
    stored = (
        span_table(spark, config, "technical_indicators", start=start)
        .withColumn("security_id", _security_of_bar())
        .filter(F.col("security_id").isin(list(named)))
        .drop("symbol")
    )
    sample = _labelled(closes.join(stored, ["security_id", "date"]), names)
    return sample.select("symbol", "date", "close", *[c for c in stored.columns if c not in ("security_id", "date")],
                         "security_id").orderBy("symbol", "date").toPandas()  # fmt: skip


# --------------------------------------------------------------------------------------------- intraday (05_intraday)


@dataclasses.dataclass
class IntradayReport:
    day: dt.date  # the session shown: ds, or the last session before it
    symbols: list[str]
    bars: pd.DataFrame  # the minute_bars rows of `symbols` on `day`
    per_symbol: pd.DataFrame  # symbol, minutes, volume, high, low, first_window, last_window (every symbol of the day)
    gaps: pd.DataFrame  # minute_bar_gaps rows whose missing windows touch the day
    checks: list  # lib.quality results of minute_bars_vs_daily (against stock_prices, when it holds the day)
    seconds: float

    @property
    def empty(self) -> bool:
        return self.per_symbol.empty

    def summary(self) -> str:
        if self.empty:
            return (
                f"no minute bars in minute_bars for {self.day}: land a simulated day with `make stream` (or "
                f"python -m lib.stream -f params/local.yaml -p ds {self.day}), or stream a real one with -p stream_url"
            )
        checks = ", ".join(f"{r.name} {r.status} ({r.details})" for r in self.checks) or "no daily bar to compare"
        return (
            f"{self.day}: {self.per_symbol['minutes'].sum():,} minute bars of {len(self.per_symbol):,} symbols, "
            f"{len(self.gaps)} stream gaps; {checks} ({self.seconds:.1f}s)"
        )


def run_intraday(spark: SparkSession, config: RunConfig, max_symbols: int = 4) -> IntradayReport:
    """The minute bars lib.stream landed for the session of ds (its New York date), for config.symbols or the
    `max_symbols` most traded that day, the gaps the stream recorded, and the check minute_bars_vs_daily against
    stock_prices (volume, high and low within the params' quality.minute_daily_tolerance). Empty, not an error,
    when no minute bar is stored for the day (summary() says how to land one)."""

    config = wap.on_main(config)  # analysis reads main: only published, audited data
    started = time.monotonic()
    catalog.ensure_tables(spark, config)
    day = trading_days(config.ds - dt.timedelta(days=10), config.ds)[-1]
    new_york_date = F.to_date(F.from_utc_timestamp("window_start", "America/New_York"))
    day_bars = catalog.read_table(spark, config, "minute_bars").filter(new_york_date == F.lit(day)).cache()
    per_symbol = (
        day_bars.groupBy("symbol")
        .agg(F.count(F.lit(1)).alias("minutes"), F.sum("volume").alias("volume"), F.max("high").alias("high"),
             F.min("low").alias("low"), F.min("window_start").alias("first_window"),
             F.max("window_start").alias("last_window"))
        .orderBy(F.col("volume").desc(), "symbol")
        .toPandas()
    )  # fmt: skip
    symbols = list(config.symbols) or list(per_symbol["symbol"][:max_symbols])
    bars = day_bars.filter(F.col("symbol").isin(symbols)).orderBy("symbol", "window_start").toPandas()
    gaps = (
        catalog.read_table(spark, config, "minute_bar_gaps")
        .filter(F.to_date(F.from_utc_timestamp("last_window_end", "America/New_York")) <= F.lit(day))
        .filter(F.to_date(F.from_utc_timestamp("next_window_start", "America/New_York")) >= F.lit(day))
        .orderBy("last_window_end")
        .toPandas()
    )
    comparisons = []
    if not per_symbol.empty:
        daily = catalog.read_table(spark, config, "stock_prices").filter(F.col("date") == F.lit(day))
        inputs = checks.QualityInputs(minute_bars=day_bars, stock_prices=daily)
        comparisons = checks.run_checks(inputs, day, [day], config.quality, only=["minute_bars_vs_daily"])
        if not daily.limit(1).count():
            checks.release(comparisons)
            comparisons = []
    day_bars.unpersist()
    return IntradayReport(day, symbols, bars, per_symbol, gaps, comparisons, time.monotonic() - started)
