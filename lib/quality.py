"""Data-quality checks over the warehouse tables of one run, their `quality_results` rows and the gate.

Every check is Spark SQL / DataFrame code that returns the failing rows themselves (a DataFrame),
so a notebook can show them; `run_checks` counts each failures frame once and keeps a sample of
up to five keys for the human-readable `details`.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib.catalog import SCHEMAS
from lib.errors import ConfigError, QualityGateError
from lib.trading_days import trading_days

SEVERITIES = ("error", "warn")
METRICS = ("open", "high", "low", "close", "volume", "vwap", "transactions")
REQUIRED_BAR_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")
SAMPLE_SIZE = 5

DEFAULT_THRESHOLDS: dict = {
    # vwap may sit this fraction outside [low, high] (rounding by the source) before it is a defect.
    "vwap_tolerance": 0.01,
    # Monthly array values and stock_prices values agree within this relative difference.
    "array_tolerance": 1e-9,
    # |robust z| (median/MAD per symbol over the span) above which a close move or a volume is an outlier.
    "outlier_z": 8.0,
    # Symbols with fewer observations than this in the span are not scored for outliers.
    "outlier_min_days": 10,
    "severity": {
        "duplicates": "error",
        "null_values": "error",
        "ohlc_consistency": "error",
        "volume_non_negative": "error",
        "completeness_tickers": "warn",
        "completeness_days": "error",
        "array_integrity": "error",
        "outliers": "warn",
    },
}

CHECK_NAMES = tuple(DEFAULT_THRESHOLDS["severity"])

# The table is the catalog's; one definition of its columns.
QUALITY_RESULTS_SCHEMA = SCHEMAS["quality_results"]


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


def resolve_thresholds(thresholds: dict | None = None) -> dict:
    """DEFAULT_THRESHOLDS overlaid with `thresholds` (the params file's `quality` section); validated."""
    merged = copy.deepcopy(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key == "severity":
            merged["severity"].update(value or {})
        else:
            merged[key] = value
    unknown = set(merged["severity"]) - set(CHECK_NAMES)
    if unknown:
        raise ConfigError(f"quality severity names unknown checks {sorted(unknown)}; expected some of {list(CHECK_NAMES)}")
    for name, severity in merged["severity"].items():
        if severity not in SEVERITIES:
            raise ConfigError(f"quality severity of {name} must be one of {list(SEVERITIES)}, got {severity!r}")
    for key in ("vwap_tolerance", "array_tolerance", "outlier_z", "outlier_min_days"):
        if not isinstance(merged[key], int | float) or merged[key] < 0:
            raise ConfigError(f"quality threshold {key} must be a non-negative number, got {merged[key]!r}")
    return merged


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
    from lib.monthly import explode_metrics  # lazily: lib.monthly is the one owner of the array layout

    return explode_metrics(monthly, keep_nulls=True).select("symbol", "date", "metric_name", "value")


def _array_integrity(inputs: QualityInputs, ctx: _Context) -> list[_Finding]:
    """Shape of each monthly row (length = day of from_date, from_date a session in the month, not after
    ds, the same for every symbol of the month) and, with stock_prices, slot-by-slot reconciliation
    over the span. Failures: symbol, month_start, metric_name, date, problem."""
    monthly = inputs.monthly_stock_prices
    if monthly is None:
        return []
    spark = monthly.sparkSession
    columns = ("symbol", "month_start", "metric_name", "date", "problem")
    length = F.coalesce(F.size("metric_array"), F.lit(-1))
    from_day = F.dayofmonth("from_date")
    sessions = trading_days(ctx.span_start.replace(day=1), max(ctx.ds, ctx.span_end))
    session_days = F.broadcast(_trading_days_frame(spark, sessions).withColumn("is_session", F.lit(True)))
    shaped = monthly.join(session_days, monthly["from_date"] == session_days["date"], "left").drop("date")
    shape_problems = _rows_with_problems(
        shaped,
        _problems(
            (length != from_day, F.format_string("length %d != day of from_date %d", length, from_day)),
            (F.trunc("from_date", "month") != F.col("month_start"), "from_date outside month"),
            (F.col("from_date") > F.lit(ctx.ds), "from_date after ds"),
            (
                F.col("is_session").isNull() & F.col("from_date").between(sessions[0], sessions[-1])
                if sessions
                else F.lit(False),
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
    symbol and measure over the span, exceeds `outlier_z`. When MAD is 0 the mean absolute deviation
    (times 1.2533) stands in for it (Iglewicz and Hoaglin); a series with no spread has no outliers."""
    if inputs.stock_prices is None:
        return []
    z_limit = float(ctx.thresholds["outlier_z"])
    min_days = int(ctx.thresholds["outlier_min_days"])
    by_date = Window.partitionBy("symbol").orderBy("date")
    measures = (
        inputs.stock_prices.filter(F.col("date").between(ctx.span_start, ctx.span_end))
        .withColumn("close_change", F.col("close") / F.lag("close").over(by_date) - 1)
        .select("symbol", "date", "close_change", F.col("volume").cast("double").alias("volume"))
        .unpivot(["symbol", "date"], ["close_change", "volume"], "measure", "value")
        .filter(F.col("value").isNotNull() & ~F.isnan("value"))
    )
    series = Window.partitionBy("symbol", "measure")
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


CHECKS: dict[str, Callable[[QualityInputs, _Context], list[_Finding]]] = {
    "duplicates": _duplicates,
    "null_values": _null_values,
    "ohlc_consistency": _ohlc_consistency,
    "volume_non_negative": _volume_non_negative,
    "completeness_tickers": _completeness_tickers,
    "completeness_days": _completeness_days,
    "array_integrity": _array_integrity,
    "outliers": _outliers,
}


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


def results_frame(spark: SparkSession, results: list[CheckResult], ds: dt.date, checked_at: dt.datetime) -> DataFrame:
    """The results as `quality_results` rows (QUALITY_RESULTS_SCHEMA), one per (check, table)."""
    rows = [(ds, r.table_name, r.name, r.severity, r.status, int(r.failed_rows), r.details, checked_at) for r in results]
    return spark.createDataFrame(rows, QUALITY_RESULTS_SCHEMA)


def failed_errors(results: list[CheckResult]) -> list[CheckResult]:
    """The failed results of error severity: the ones that stop the pipeline."""
    return [r for r in results if r.severity == "error" and r.status == "fail"]


def enforce_gate(results: list[CheckResult], ds: dt.date | None = None) -> None:
    """Raise QualityGateError naming every failed error-severity check; warn-severity failures pass."""
    failed = failed_errors(results)
    if not failed:
        return
    named = ", ".join(f"{r.name} on {r.table_name} ({r.failed_rows} rows)" for r in failed)
    where = f"ds {ds}" if ds is not None else "this run's ds"
    raise QualityGateError(f"quality gate failed: {named}; see quality_results for {where}")
