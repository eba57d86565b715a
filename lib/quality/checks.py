"""Data-quality checks over the warehouse tables of one run, their `quality_results` rows and the gate.

Every check is Spark SQL / DataFrame code that returns the failing rows themselves (a DataFrame),
so a notebook can show them; `run_checks` counts each failures frame once and keeps a sample of
up to five keys for the human-readable `details`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib.core.errors import ConfigError
from lib.core.trading_days import today_new_york, trading_days
from lib.core.vocabulary import METRICS
from lib.settings.thresholds import CHECK_NAMES, resolve_thresholds
from lib.storage.monthly import explode_metrics

REQUIRED_BAR_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")
SAMPLE_SIZE = 5
# Calendar days of prices before the span that the checks see (QualityInputs.price_context): longer than any NYSE
# closure (the longest since 2000, after 9/11, was six days), so every span day has its previous bar.
PRICE_CONTEXT_DAYS = 14




@dataclass(frozen=True)
class CheckSpec:
    """What a result is about: the check, the table it judged, and how bad a failure is."""

    name: str
    table_name: str
    severity: str


@dataclass(frozen=True, eq=False)
class CheckResult:
    """One check on one table. `failures` holds the failing rows (cached); `failed_rows` is its count."""

    name: str
    table_name: str
    severity: str
    failed_rows: int
    details: str
    failures: DataFrame

    @property
    def status(self) -> str:
        return "fail" if self.failed_rows > 0 else "pass"

    @property
    def spec(self) -> CheckSpec:
        return CheckSpec(self.name, self.table_name, self.severity)


@dataclass(frozen=True)
class QualityInputs:
    """The tables of one run, already filtered to the run's span. A table left as None skips the
    checks that need it: those results are not emitted at all (neither pass nor fail)."""

    raw_daily_bars: DataFrame | None = None
    stock_prices: DataFrame | None = None
    monthly_stock_prices: DataFrame | None = None
    stock_tickers: DataFrame | None = None
    ingest_failures: DataFrame | None = None
    # stock_prices around the span, not only in it: from PRICE_CONTEXT_DAYS before the first month checked through
    # the end of the last one. Late data (a ds before its month's from_date) and the previous close of a span's first
    # day need it. None falls back to `stock_prices`.
    price_context: DataFrame | None = None
    # The whole corporate_actions table (small). None skips the checks that need it; an empty frame passes them.
    corporate_actions: DataFrame | None = None
    # minute_bars of the span's days (lib.stream). None skips minute_bars_vs_daily.
    minute_bars: DataFrame | None = None


def _price_context(inputs: QualityInputs) -> DataFrame | None:
    return inputs.price_context if inputs.price_context is not None else inputs.stock_prices


@dataclass(frozen=True)
class _Context:
    ds: dt.date
    span_start: dt.date
    span_end: dt.date
    thresholds: dict


@dataclass(frozen=True)
class _Finding:
    """A check's failing rows on one table, with what `details` shows of them."""

    table_name: str
    failures: DataFrame
    label: str
    sample_columns: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Row-level checks on bars (raw_daily_bars as received, stock_prices after dedup)


def _bar_tables(inputs: QualityInputs) -> list[tuple[str, DataFrame]]:
    tables = [("raw_daily_bars", inputs.raw_daily_bars), ("stock_prices", inputs.stock_prices)]
    return [(name, df) for name, df in tables if df is not None]


def _problems(*flags: tuple[Column, str]) -> Column:
    """Comma-separated names of the flags that hold; '' when none does (a null flag does not hold)."""
    return F.concat_ws(", ", *[F.when(condition, text) for condition, text in flags])


def _rows_with_problems(df: DataFrame, problem: Column) -> DataFrame:
    return df.withColumn("problem", problem).filter(F.col("problem") != "")


def _series(bars: DataFrame) -> Column:
    """What a series of bars is followed by day to day: the security (a ticker change continues it, a reused ticker
    starts another), the ticker for a bar without security_id (an earlier version's rows, a frame without it)."""
    return F.coalesce(F.col("security_id"), F.col("symbol")) if "security_id" in bars.columns else F.col("symbol")


def _null_values(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    findings = []
    for table_name, bars in _bar_tables(inputs):
        problem = _problems(*[(F.col(c).isNull(), f"null {c}") for c in REQUIRED_BAR_COLUMNS])
        findings.append(
            _Finding(table_name, _rows_with_problems(bars, problem), "rows with null required values", ("symbol", "date"))
        )
    return findings


def _ohlc_consistency(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    tolerance = float(ctx.thresholds["vwap_tolerance"])
    o, h, lo, c, vwap = (F.col(x) for x in ("open", "high", "low", "close", "vwap"))
    # Nulls are null_values' business: a comparison with a null is not a failure here.
    problem = _problems(
        (h < lo, "high < low"),
        (lo > F.least(o, c), "low > min(open, close)"),
        (h < F.greatest(o, c), "high < max(open, close)"),
        ((vwap < lo * (1 - tolerance)) | (vwap > h * (1 + tolerance)), "vwap outside [low, high]"),
        ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (vwap <= 0), "price <= 0"),
    )
    return [
        _Finding(table_name, _rows_with_problems(bars, problem), "rows with inconsistent prices", ("symbol", "date"))
        for table_name, bars in _bar_tables(inputs)
    ]


def _volume_non_negative(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    problem = _problems(
        (F.col("volume") < 0, "volume < 0"),
        (F.col("transactions") < 0, "transactions < 0"),
    )
    return [
        _Finding(table_name, _rows_with_problems(bars, problem), "rows with negative counts", ("symbol", "date"))
        for table_name, bars in _bar_tables(inputs)
    ]


# --------------------------------------------------------------------------------------------
# Keys


DUPLICATE_KEYS = {
    "raw_daily_bars": ("symbol", "date"),
    "stock_prices": ("symbol", "date"),
    "monthly_stock_prices": ("symbol", "month_start", "metric_name"),
    "stock_tickers": ("ticker", "ds"),
}


def _duplicates(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """One failing row per key seen more than once, with `copies`; in raw_daily_bars a bar received
    twice is a defect even when both copies agree."""
    findings = []
    for table_name, keys in DUPLICATE_KEYS.items():
        df = getattr(inputs, table_name)
        if df is None:
            continue
        failures = (
            df.groupBy(*keys)
            .agg(F.count(F.lit(1)).alias("copies"))
            .filter(F.col("copies") > 1)
            .withColumn("problem", F.concat(F.lit("x"), F.col("copies").cast("string")))
        )
        findings.append(_Finding(table_name, failures, f"duplicate ({', '.join(keys)})", keys))
    return findings


# --------------------------------------------------------------------------------------------
# Completeness


def _completeness_tickers(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """Active tickers of the universe at ds with neither a bar on ds nor an ingest_failures row at ds.
    A failure row whose symbol is null (a whole-market request, e.g. grouped daily) explains every ticker."""
    if inputs.stock_tickers is None or inputs.stock_prices is None:
        return []
    ds = ctx.ds
    universe = (
        inputs.stock_tickers.filter((F.col("ds") == F.lit(ds)) & F.col("active"))
        .select(F.col("ticker").alias("symbol"))
        .distinct()
    )
    if not trading_days(ds, ds):
        universe = universe.limit(0)  # no session, so no bar is expected
    with_bar = inputs.stock_prices.filter(F.col("date") == F.lit(ds)).select("symbol")
    missing = universe.join(with_bar, "symbol", "left_anti")
    if inputs.ingest_failures is not None:
        explained = inputs.ingest_failures.filter(F.col("ds") == F.lit(ds)).select(F.col("symbol").alias("failed_symbol"))
        condition = (missing["symbol"] == explained["failed_symbol"]) | explained["failed_symbol"].isNull()
        missing = missing.join(F.broadcast(explained), condition, "left_anti")
    failures = missing.select("symbol", F.lit(ds).alias("date"), F.lit("no bar, no ingest failure").alias("problem"))
    return [_Finding("stock_prices", failures, f"active tickers without a bar or ingest failure on {ds}", ("symbol",))]


def _month_end(day: dt.date) -> dt.date:
    next_month = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return next_month - dt.timedelta(days=1)


def _trading_days_frame(spark: SparkSession, days: list[dt.date]) -> DataFrame:
    schema = T.StructType([T.StructField("date", T.DateType())])
    return spark.createDataFrame([(d,) for d in days], schema)


def _completeness_days(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """NYSE sessions of the span with no bar at all, and bars dated on a day that is not a session."""
    sessions = trading_days(ctx.span_start, ctx.span_end)
    findings = []
    for table_name, bars in _bar_tables(inputs):
        expected = F.broadcast(_trading_days_frame(bars.sparkSession, sessions))
        bar_days = bars.filter(F.col("date").between(ctx.span_start, ctx.span_end)).select("date").distinct()
        missing = expected.join(bar_days, "date", "left_anti").withColumn("problem", F.lit("no bar"))
        off_session = bar_days.join(expected, "date", "left_anti").withColumn("problem", F.lit("bar on a non-trading day"))
        findings.append(_Finding(table_name, missing.unionByName(off_session), "days with missing or misplaced bars", ("date",)))
    return findings


# --------------------------------------------------------------------------------------------
# Monthly arrays


def _explode_slots(monthly: DataFrame) -> DataFrame:
    """(symbol, date, metric_name, value) for every slot of the arrays, nulls included."""

    return explode_metrics(monthly, keep_nulls=True).select("symbol", "date", "metric_name", "value")


def _array_integrity(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """Shape of each monthly row and, with stock_prices, slot-by-slot reconciliation over the span.
    Failures: symbol, month_start, metric_name, date, problem.

    Shape: length = day of from_date; from_date a session in the month, the same for every symbol of the
    month, not in the future, and not after both ds and the month's latest bar in stock_prices. That last
    bound is what "never after the ds of the run that set it" leaves checkable later: a run for a day
    before from_date (late data) keeps the later from_date, whose own run left bars up to it.
    """
    monthly = inputs.monthly_stock_prices
    if monthly is None:
        return []
    spark = monthly.sparkSession
    columns = ("symbol", "month_start", "metric_name", "date", "problem")
    length = F.coalesce(F.size("metric_array"), F.lit(-1))
    from_day = F.dayofmonth("from_date")
    # Days through the end of ds's month are judged, so a from_date after ds (late data) is too.
    today = today_new_york()
    judged_from, judged_to = ctx.span_start.replace(day=1), min(_month_end(max(ctx.ds, ctx.span_end)), today)
    sessions = trading_days(judged_from, judged_to)
    session_days = F.broadcast(_trading_days_frame(spark, sessions).withColumn("is_session", F.lit(True)))
    shaped = monthly.join(session_days, monthly["from_date"] == session_days["date"], "left").drop("date")
    bars = _price_context(inputs)
    latest_bars = (
        bars.groupBy(F.trunc("date", "month").alias("month_start")).agg(F.max("date").alias("latest_bar"))
        if bars is not None
        else spark.createDataFrame([], "month_start date, latest_bar date")
    )
    shaped = shaped.join(F.broadcast(latest_bars), "month_start", "left")
    shape_problems = _rows_with_problems(
        shaped,
        _problems(
            (length != from_day, F.format_string("length %d != day of from_date %d", length, from_day)),
            (F.trunc("from_date", "month") != F.col("month_start"), "from_date outside month"),
            (F.col("from_date") > F.lit(today), F.lit(f"from_date in the future (today is {today})")),
            (
                (F.col("from_date") > F.lit(ctx.ds))
                & (F.col("from_date") <= F.lit(today))
                & (F.col("latest_bar").isNull() | (F.col("from_date") > F.col("latest_bar"))),
                F.format_string(
                    "from_date after ds %s and after the month's latest bar %s",
                    F.lit(ctx.ds.isoformat()),
                    F.coalesce(F.col("latest_bar").cast("string"), F.lit("(none)")),
                ),
            ),
            (
                F.col("is_session").isNull() & F.col("from_date").between(judged_from, judged_to),
                "from_date not a trading day",
            ),
        ),
    ).select(*columns[:3], F.col("from_date").alias("date"), "problem")

    # The latest from_date of the month is taken as the right one; rows that lag behind it are reported.
    month = Window.partitionBy("month_start")
    lagging = (
        monthly.withColumn("month_from_date", F.max("from_date").over(month))
        .filter(F.col("from_date") < F.col("month_from_date"))
        .select(
            *columns[:3],
            F.col("from_date").alias("date"),
            F.format_string(
                "from_date %s != month's %s", F.col("from_date").cast("string"), F.col("month_from_date").cast("string")
            ).alias("problem"),
        )
    )
    failures = shape_problems.unionByName(lagging)

    if inputs.stock_prices is not None:
        failures = failures.unionByName(_reconcile(monthly, inputs.stock_prices, ctx).select(*columns))
    return [_Finding("monthly_stock_prices", failures, "monthly rows or slots inconsistent", ("symbol", "metric_name", "date"))]


def _reconcile(monthly: DataFrame, stock_prices: DataFrame, ctx: _Context) -> DataFrame:
    """Slots against bars on (symbol, date, metric_name) over the span: a value mismatch, a bar value
    with no (or a null) slot, a non-null slot with no bar."""
    tolerance = float(ctx.thresholds["array_tolerance"])
    in_span = F.col("date").between(ctx.span_start, ctx.span_end)
    slots = (
        _explode_slots(monthly)
        .filter(in_span)
        .select("symbol", "date", "metric_name", F.col("value").alias("array_value"), F.lit(True).alias("has_slot"))
    )
    bars = (
        stock_prices.filter(in_span)
        .select("symbol", "date", *[F.col(m).cast("double").alias(m) for m in METRICS])
        .unpivot(["symbol", "date"], list(METRICS), "metric_name", "bar_value")
        .withColumn("has_bar", F.lit(True))
    )
    joined = slots.join(bars, ["symbol", "date", "metric_name"], "full_outer")
    array_value, bar_value = F.col("array_value"), F.col("bar_value")
    differs = F.abs(array_value - bar_value) > F.lit(tolerance) * F.greatest(F.lit(1.0), F.abs(bar_value))
    problem = (
        F.when(
            F.col("has_bar").isNull() & array_value.isNotNull(),
            F.format_string("non-null slot %s with no bar", array_value.cast("string")),
        )
        .when(F.col("has_slot").isNull() & bar_value.isNotNull(), F.lit("bar missing from array (no slot)"))
        .when(array_value.isNull() & bar_value.isNotNull(), F.lit("bar missing from array (null slot)"))
        .when(
            (array_value.isNotNull() & bar_value.isNull()) | differs,
            F.format_string("value mismatch: array %s, bar %s", array_value.cast("string"), bar_value.cast("string")),
        )
    )
    return (
        joined.withColumn("problem", problem)
        .filter(F.col("problem").isNotNull())
        .withColumn("month_start", F.trunc("date", "month"))
    )


# --------------------------------------------------------------------------------------------
# Outliers


def _outliers(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """Day-over-day close changes and volumes whose robust z-score, 0.6745 * (x - median) / MAD per
    series (security, see _series) and measure over the span, exceeds `outlier_z`. When MAD is 0 the mean absolute
    deviation (times 1.2533) stands in for it (Iglewicz and Hoaglin); a series with no spread has no outliers."""
    if inputs.stock_prices is None:
        return []
    z_limit = float(ctx.thresholds["outlier_z"])
    min_days = int(ctx.thresholds["outlier_min_days"])
    by_date = Window.partitionBy("_series").orderBy("date")
    measures = (
        inputs.stock_prices.filter(F.col("date").between(ctx.span_start, ctx.span_end))
        .withColumn("_series", _series(inputs.stock_prices))
        .withColumn("close_change", F.col("close") / F.lag("close").over(by_date) - 1)
        .select("_series", "symbol", "date", "close_change", F.col("volume").cast("double").alias("volume"))
        .unpivot(["_series", "symbol", "date"], ["close_change", "volume"], "measure", "value")
        .filter(F.col("value").isNotNull() & ~F.isnan("value"))
    )
    series = Window.partitionBy("_series", "measure")
    centred = measures.withColumn("median", F.percentile("value", 0.5).over(series)).withColumn(
        "n", F.count(F.lit(1)).over(series)
    )
    deviation = F.abs(F.col("value") - F.col("median"))
    spread = (
        centred.withColumn("deviation", deviation)
        .withColumn("mad", F.percentile("deviation", 0.5).over(series))
        .withColumn("mean_ad", F.avg("deviation").over(series))
    )
    scale = F.when(F.col("mad") > 0, F.col("mad") / 0.6745).when(F.col("mean_ad") > 0, F.col("mean_ad") * 1.253314)
    scored = spread.withColumn("robust_z", (F.col("value") - F.col("median")) / scale)
    shown = F.when(F.col("measure") == "close_change", F.format_string("close change %+.1f%%", F.col("value") * 100)).otherwise(
        F.format_string("volume %.0f", F.col("value"))
    )
    failures = scored.filter((F.col("n") >= min_days) & (F.abs("robust_z") > z_limit)).select(
        "symbol",
        "date",
        "measure",
        "value",
        "robust_z",
        F.format_string("%s, z=%.1f", shown, F.col("robust_z")).alias("problem"),
    )
    return [_Finding("stock_prices", failures, f"outlying moves or volumes (|robust z| > {z_limit:g})", ("symbol", "date"))]


# --------------------------------------------------------------------------------------------
# Corporate actions and the as-traded prices they explain


def _not_positive(column: str) -> Column:
    """Null, NaN, zero or negative (Spark orders NaN above every number, so `> 0` alone lets it through)."""
    return F.col(column).isNull() | F.isnan(column) | (F.col(column) <= 0)


def _split_ratios(actions: DataFrame) -> DataFrame:
    """symbol, ex_date, split_ratio (the product of split_from / split_to) of the splits that can be right."""
    return (
        actions.filter((F.col("action_type") == "split") & ~_not_positive("split_from") & ~_not_positive("split_to"))
        .groupBy("symbol", "ex_date")
        .agg(F.product(F.col("split_from") / F.col("split_to")).alias("split_ratio"))
    )


def _corporate_actions(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """Actions that cannot be right, over the whole table: one symbol, type and ex-date under several ids, a split
    ratio that is missing, zero or negative, a dividend whose cash_amount is not positive, and, for ex-dates in the
    span (whose previous close the run has), a dividend of at least the previous as-traded close per new share.
    Failures: symbol, action_type, ex_date, source_id, value (the count, ratio or cash / close), problem."""
    actions = inputs.corporate_actions
    if actions is None:
        return []
    columns = ("symbol", "action_type", "ex_date", "source_id", "value", "problem")
    duplicates = (
        actions.groupBy("symbol", "action_type", "ex_date")
        .agg(F.array_sort(F.collect_set("source_id")).alias("ids"))
        .filter(F.size("ids") > 1)
        .select(
            "symbol", "action_type", "ex_date",
            F.concat_ws(", ", "ids").alias("source_id"),
            F.size("ids").cast("double").alias("value"),
            F.format_string("the same %s under %d ids", F.col("action_type"), F.size("ids")).alias("problem"),
        )
    )  # fmt: skip
    is_split, is_dividend = F.col("action_type") == "split", F.col("action_type") == "dividend"
    shown = F.coalesce(F.col("split_from").cast("string"), F.lit("null"))
    shown_to = F.coalesce(F.col("split_to").cast("string"), F.lit("null"))
    impossible = _rows_with_problems(
        actions,
        _problems(
            (~(is_split | is_dividend) | F.col("action_type").isNull(), "action_type not split or dividend"),
            (is_split & (_not_positive("split_from") | _not_positive("split_to")),
             F.format_string("split ratio %s:%s cannot be right", shown, shown_to)),
            (is_dividend & _not_positive("cash_amount"),
             F.format_string("cash_amount %s <= 0", F.coalesce(F.col("cash_amount").cast("string"), F.lit("null")))),
        ),
    ).select("symbol", "action_type", "ex_date", "source_id",
             F.when(is_split, F.col("split_from") / F.col("split_to")).otherwise(F.col("cash_amount")).alias("value"),
             "problem")  # fmt: skip
    failures = duplicates.unionByName(impossible)

    bars = _price_context(inputs)
    if bars is not None:
        dividends = actions.filter(
            is_dividend & ~_not_positive("cash_amount") & F.col("ex_date").between(ctx.span_start, ctx.span_end)
        ).join(_split_ratios(actions), ["symbol", "ex_date"], "left")
        closes = bars.filter(F.col("close").isNotNull()).select("symbol", F.col("date").alias("bar_date"), "close")
        previous = (
            dividends.join(closes, (dividends["symbol"] == closes["symbol"]) & (closes["bar_date"] < dividends["ex_date"]))
            .groupBy(dividends["symbol"], "action_type", "ex_date", "source_id", "cash_amount", "split_ratio")
            .agg(F.max("bar_date").alias("bar_date"), F.max_by("close", "bar_date").alias("close"))
            .withColumn("per_new_share", F.col("close") * F.coalesce("split_ratio", F.lit(1.0)))
        )
        too_large = previous.filter(F.col("cash_amount") >= F.col("per_new_share")).select(
            "symbol", "action_type", "ex_date", "source_id",
            (F.col("cash_amount") / F.col("per_new_share")).alias("value"),
            F.format_string("cash_amount %s >= previous close %s per new share (%s)", F.col("cash_amount").cast("string"),
                            F.col("per_new_share").cast("string"), F.col("bar_date").cast("string")).alias("problem"),
        )  # fmt: skip
        failures = failures.unionByName(too_large)
    return [_Finding("corporate_actions", failures.select(*columns), "impossible corporate actions",
                     ("symbol", "ex_date", "source_id"))]  # fmt: skip


def _price_jumps(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """Close-to-close moves (as traded) into a span day that the splits between the two bars do not explain:
    beyond `jump_ratio` either way with no split in between (an unrecorded split, or news), or, across a split's
    ex-date, off split_from / split_to by more than `split_tolerance` (a vendor's wrong split date shows as both).
    A move is a security's (see _series): a ticker change is no move, a reused ticker's first bar has no previous
    one; a split counts under either ticker of the move (an action is keyed by the ticker on its ex-date).
    Needs corporate_actions. Failures: symbol, previous_date, date, observed_ratio, split_ratio, problem."""
    bars = _price_context(inputs)
    if bars is None or inputs.corporate_actions is None:
        return []
    jump = math.log(float(ctx.thresholds["jump_ratio"]))
    tolerance = math.log(float(ctx.thresholds["split_tolerance"]))
    by_date = Window.partitionBy(_series(bars)).orderBy("date")
    moves = (
        bars.filter(F.col("close").isNotNull() & (F.col("close") > 0))
        .select("symbol", "date", "close", F.lag("date").over(by_date).alias("previous_date"),
                F.lag("close").over(by_date).alias("previous_close"), F.lag("symbol").over(by_date).alias("previous_symbol"))
        .filter(F.col("previous_close").isNotNull() & F.col("date").between(ctx.span_start, ctx.span_end))
        .withColumn("ticker", F.explode(F.array_distinct(F.array("symbol", "previous_symbol"))))  # either ticker's splits
    )  # fmt: skip
    splits = F.broadcast(_split_ratios(inputs.corporate_actions))
    explained = (
        moves.join(
            splits,
            (moves["ticker"] == splits["symbol"])
            & (splits["ex_date"] > moves["previous_date"])
            & (splits["ex_date"] <= moves["date"]),
            "left",
        )
        .groupBy(moves["symbol"], "previous_date", "date", "previous_close", "close")
        .agg(F.product(F.coalesce("split_ratio", F.lit(1.0))).alias("split_ratio"),
             F.concat_ws(", ", F.array_sort(F.collect_list(F.col("ex_date").cast("string")))).alias("ex_dates"))
    )  # fmt: skip
    observed = F.col("close") / F.col("previous_close")
    residual = F.abs(F.log(observed / F.col("split_ratio")))
    has_split = F.col("ex_dates") != ""
    move = F.format_string(
        "close x%.3f from %s to %s", observed, F.col("previous_date").cast("string"), F.col("date").cast("string")
    )
    failures = (
        explained.withColumn("observed_ratio", observed)
        .filter((~has_split & (residual > jump)) | (has_split & (residual > tolerance)))
        .select(
            "symbol", "previous_date", "date", "observed_ratio", "split_ratio",
            F.when(has_split, F.format_string("%s, split (ex %s) expects x%.3f: not in the prices", move, F.col("ex_dates"),
                                              F.col("split_ratio")))
            .otherwise(F.format_string("%s, no split explains it", move)).alias("problem"),
        )
    )  # fmt: skip
    limit = float(ctx.thresholds["jump_ratio"])
    return [_Finding("stock_prices", failures, f"moves no split explains (beyond x{limit:g}) or splits the prices do not show",
                     ("symbol", "date"))]  # fmt: skip


def _minute_bars_vs_daily(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """A symbol's minute bars of a span day (its New York date) against its daily bar, when both exist: the minutes'
    summed volume, highest high and lowest low each within `minute_daily_tolerance` (relative) of the day's. Failures:
    symbol, date, minutes, minute_volume, daily_volume, minute_high, daily_high, minute_low, daily_low, problem."""
    if inputs.minute_bars is None or inputs.stock_prices is None:
        return []
    tolerance = float(ctx.thresholds["minute_daily_tolerance"])
    day = F.to_date(F.from_utc_timestamp("window_start", "America/New_York"))
    minutes = (
        inputs.minute_bars.withColumn("date", day)
        .filter(F.col("date").between(ctx.span_start, ctx.span_end))
        .groupBy("symbol", "date")
        .agg(F.count(F.lit(1)).alias("minutes"), F.sum("volume").alias("minute_volume"),
             F.max("high").alias("minute_high"), F.min("low").alias("minute_low"))
    )  # fmt: skip
    daily = inputs.stock_prices.select("symbol", "date", F.col("volume").alias("daily_volume"),
                                       F.col("high").alias("daily_high"), F.col("low").alias("daily_low"))  # fmt: skip

    def off(minute: str, daily_value: str) -> Column:
        return F.abs(F.col(minute) - F.col(daily_value)) > tolerance * F.abs(F.col(daily_value))

    problem = _problems(
        (off("minute_volume", "daily_volume"), F.format_string("volume %.0f of %.0f", "minute_volume", "daily_volume")),
        (off("minute_high", "daily_high"), F.format_string("high %.4f vs %.4f", "minute_high", "daily_high")),
        (off("minute_low", "daily_low"), F.format_string("low %.4f vs %.4f", "minute_low", "daily_low")),
    )
    failures = _rows_with_problems(minutes.join(daily, ["symbol", "date"]), problem)
    return [_Finding("minute_bars", failures, f"days whose minute bars disagree with the daily bar (beyond {tolerance:g})",
                     ("symbol", "date"))]  # fmt: skip


# Each check is the function named for it: the names (and their default severities) are lib.settings.thresholds',
# so a check added there without its function here fails at import.
CHECKS: dict[str, Callable[[QualityInputs, _Context], list[_Finding]]] = {name: globals()[f"_{name}"] for name in CHECK_NAMES}


# --------------------------------------------------------------------------------------------
# Running, reporting, gating


def _details(finding: _Finding, failed_rows: int, sample: list) -> str:
    text = f"{failed_rows} {finding.label}"
    if not sample:
        return text
    keys = []
    for row in sample:
        key = " ".join(str(row[c]) for c in finding.sample_columns)
        keys.append(f"{key} ({row['problem']})" if row["problem"] else key)
    more = ", …" if failed_rows > len(sample) else ""
    return f"{text}: {', '.join(keys)}{more}"


def _evaluate(name: str, severity: str, finding: _Finding) -> CheckResult:
    failures = finding.failures.cache()
    failed_rows = failures.count()
    sample = []
    if failed_rows:
        ordered = failures.orderBy(*finding.sample_columns)
        sample = ordered.select(*finding.sample_columns, "problem").limit(SAMPLE_SIZE).collect()
    return CheckResult(name, finding.table_name, severity, failed_rows, _details(finding, failed_rows, sample), failures)


def run_checks(
    inputs: QualityInputs,
    ds: dt.date,
    span_days: list[dt.date],
    thresholds: dict | None = None,
    only: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Run the checks (all of CHECK_NAMES, or `only` those) and return one result per (check, table).

    `span_days` are the days the run covered (its first and last bound the span); empty means ds alone.
    Checks whose tables are None in `inputs` are not emitted. Each result's `failures` frame stays
    cached; call `release(results)` when done with them.
    """
    limits = resolve_thresholds(thresholds)
    names = list(CHECK_NAMES if only is None else only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown quality checks {unknown}; expected some of {list(CHECK_NAMES)}")
    days = sorted(span_days) or [ds]
    ctx = _Context(ds=ds, span_start=days[0], span_end=days[-1], thresholds=limits)

    # Every table feeds several checks: cache the ones the caller has not, and drop them afterwards.
    cached_here = []
    for df in vars(inputs).values():
        if df is not None and not df.is_cached:
            cached_here.append(df.cache())
    try:
        results = []
        for name in names:
            for finding in CHECKS[name](inputs, ctx):
                results.append(_evaluate(name, limits["severity"][name], finding))
        return results
    finally:
        for df in cached_here:
            df.unpersist()


def release(results: list[CheckResult]) -> None:
    """Drop the cached failures frames of `results`."""
    for result in results:
        result.failures.unpersist()
