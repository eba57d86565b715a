"""The monthly rollup: daily `stock_prices` rows folded into one array per symbol, month and metric, and back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    StringType,
    StructField,
    StructType,
)

from lib.core.vocabulary import METRICS
from lib.storage.catalog import SCHEMAS

MONTHLY_SCHEMA = SCHEMAS["monthly_stock_prices"]

# Column order of the `stock_prices` table, which `to_daily_rows` rebuilds.
DAILY_COLUMNS = ("symbol", "date", *METRICS)

_APPLIED_MONTHS_SCHEMA = StructType(
    [
        StructField("month_start", DateType()),
        # applied_mask[d - 1] is true when day d of the month is applied now (31 slots for every month).
        StructField("applied_mask", ArrayType(BooleanType())),
        StructField("last_applied_day", DateType()),
    ]
)


def month_start(day: dt.date) -> dt.date:
    """The first calendar day of `day`'s month."""
    return day.replace(day=1)


def _applied_months(spark, applied_days: Sequence[dt.date]) -> DataFrame:
    """One tiny row per touched month: a mask of the days of it applied now, and the latest of them."""
    days_by_month: dict[dt.date, set[dt.date]] = {}
    for day in applied_days:
        days_by_month.setdefault(month_start(day), set()).add(day)
    rows = []
    for month, days in sorted(days_by_month.items()):
        applied = {day.day for day in days}
        rows.append((month, [day_of_month in applied for day_of_month in range(1, 32)], max(days)))
    return spark.createDataFrame(rows, _APPLIED_MONTHS_SCHEMA)


def _days_of_month(from_date: str = "from_date") -> Column:
    """1, 2, ..., day of month of `from_date`: the slots (1-based) of an array ending on that day."""
    return F.sequence(F.lit(1), F.dayofmonth(from_date))


def _slot_value(metric: str):
    """A day -> value lambda: the applied bar's value if that day is applied now, else the previous array's value.

    Every lookup is by position (constant time; Spark evaluates lambdas interpreted, so a search per slot
    would dominate a backfill). Safe under ANSI mode: the mask has 31 slots and `day_bars` ends on
    `from_date`, and the previous array is indexed only below its size (element_at past the end raises).
    """
    previous = F.col(f"previous_{metric}")

    def value(day: Column) -> Column:
        return F.when(F.element_at("applied_mask", day), F.element_at("day_bars", day)[metric]).when(
            day <= F.size(previous), F.element_at(previous, day)
        )

    return value


def apply_days(prices: DataFrame, existing: DataFrame | None, applied_days: Sequence[dt.date]) -> DataFrame:
    """The complete new `monthly_stock_prices` rows of every month touched by `applied_days`.

    Needs `prices` with the `stock_prices` columns (`symbol`, `date`, the METRICS), one row per symbol
    and date (a duplicate fails the job in map_from_entries); rows on other dates are ignored. Needs
    `existing` with the MONTHLY_SCHEMA columns, or None for an empty table; rows of other months are
    ignored. Returns MONTHLY_SCHEMA rows for the touched months only: every symbol of those months in
    old or new data, all METRICS each, so the caller can overwrite
    those month partitions as a whole.

    Applying a day sets its slot in every array of its month (null for a symbol without a bar that day);
    other slots keep their previous value; `from_date` becomes the later of the existing one and the
    latest applied day of the month, and every array is as long as its day of month. All days are
    placed in one pass, so a backfill over many days and months costs one job, not one per day.
    """
    spark = prices.sparkSession
    if not applied_days:
        return spark.createDataFrame([], MONTHLY_SCHEMA)
    touched_months = sorted({month_start(day) for day in applied_days})

    if existing is None:
        existing = spark.createDataFrame([], MONTHLY_SCHEMA)
    existing_in_touched_months = existing.where(F.col("month_start").isin(touched_months))
    previous_from_dates = existing_in_touched_months.groupBy("month_start").agg(F.max("from_date").alias("previous_from_date"))
    months = F.broadcast(
        _applied_months(spark, applied_days)
        .join(F.broadcast(previous_from_dates), "month_start", "left")
        .select(
            "month_start",
            "applied_mask",
            # greatest() skips nulls: a month new to the table takes its latest applied day.
            F.greatest("previous_from_date", "last_applied_day").alias("from_date"),
        )
    )

    # Both sides are grouped by (symbol, month), so they meet without another shuffle: the day's bars (every
    # metric of a day in one struct) placed once in an array of bars, and the previous arrays, one column a metric.
    bars_by_day = (
        prices.where(F.col("date").isin(sorted(set(applied_days))))
        .select(
            "symbol",
            F.trunc("date", "month").alias("month_start"),
            F.dayofmonth("date").alias("day_of_month"),
            F.struct(*(F.col(metric).cast(DoubleType()).alias(metric) for metric in METRICS)).alias("bar"),
        )
        .groupBy("symbol", "month_start")
        .agg(F.map_from_entries(F.collect_list(F.struct("day_of_month", "bar"))).alias("bars"))
    )
    previous_arrays = existing_in_touched_months.groupBy("symbol", "month_start").agg(
        # first(): one array per (symbol, month, metric); a duplicated row in a damaged table collapses to one.
        *(F.first(F.when(F.col("metric_name") == metric, F.col("metric_array")), ignorenulls=True).alias(f"previous_{metric}")
          for metric in METRICS)
    )  # fmt: skip
    combined = (
        bars_by_day.join(previous_arrays, ["symbol", "month_start"], "full")
        .join(months, "month_start")
        # A map lookup scans the map's keys: done once per slot of a (symbol, month), not once per metric too.
        .withColumn("day_bars", F.transform(_days_of_month(), lambda day: F.col("bars")[day]))
    )
    per_metric = F.array(
        *(
            F.struct(
                F.when(F.lit(True), F.lit(metric)).alias("metric_name"),  # nullable, as the table's column
                F.transform(_days_of_month(), _slot_value(metric)).alias("metric_array"),
            )
            for metric in METRICS
        )
    )
    return combined.select("symbol", "month_start", "from_date", F.explode(per_metric).alias("metric")).select(
        F.col("symbol").cast(StringType()),
        F.col("metric.metric_name").cast(StringType()).alias("metric_name"),
        F.col("metric.metric_array").cast(ArrayType(DoubleType())).alias("metric_array"),
        F.col("month_start").cast(DateType()),
        F.col("from_date").cast(DateType()),
    )


def monthly_from_prices(prices: DataFrame, trading_days: Sequence[dt.date]) -> DataFrame:
    """Monthly rows built from scratch for the months of `trading_days`: `apply_days` on an empty table."""
    return apply_days(prices, None, trading_days)


def explode_metrics(monthly: DataFrame, keep_nulls: bool = False) -> DataFrame:
    """One row per slot of every array: `symbol`, `date`, `metric_name`, `value`.

    Needs `symbol`, `metric_name`, `metric_array` and `month_start`; `date` is month_start plus the
    slot's position. Null slots (days without a value) are dropped unless `keep_nulls`.
    """
    exploded = monthly.select(
        "symbol",
        "metric_name",
        "month_start",
        F.posexplode("metric_array").alias("position", "value"),
    )
    if not keep_nulls:
        exploded = exploded.where(F.col("value").isNotNull())
    return exploded.select(
        "symbol",
        F.date_add("month_start", F.col("position")).alias("date"),
        "metric_name",
        "value",
    )


def daily_rows(monthly: DataFrame) -> DataFrame:
    """Rows in the `stock_prices` schema straight from monthly rows: `to_daily_rows(explode_metrics(monthly))`.

    The same rows, the fast way: the metric arrays of a symbol and month meet in one row (a shuffle of a row per
    symbol and month), are zipped slot by slot and exploded once, where the pivot shuffles a row per slot and
    metric (a year of the whole market: about 5 s against 60 s). A metric missing for a month counts as all null.
    """
    by_month = monthly.groupBy("symbol", "month_start").agg(
        *(F.first(F.when(F.col("metric_name") == metric, F.col("metric_array")), ignorenulls=True).alias(metric)
          for metric in METRICS)  # fmt: skip
    )
    doubles = ArrayType(DoubleType())
    slots = by_month.select(
        "symbol",
        "month_start",
        *(F.coalesce(F.col(metric).cast(doubles), F.array().cast(doubles)).alias(metric) for metric in METRICS),
    ).select("symbol", "month_start", F.posexplode(F.arrays_zip(*METRICS)).alias("position", "slot"))
    return slots.where(F.coalesce(*(F.col(f"slot.{metric}") for metric in METRICS)).isNotNull()).select(
        "symbol",
        F.date_add("month_start", F.col("position")).alias("date"),
        *(F.col(f"slot.{metric}").alias(metric) for metric in METRICS if metric != "transactions"),
        F.col("slot.transactions").cast("bigint").alias("transactions"),
    )


def to_daily_rows(exploded: DataFrame) -> DataFrame:
    """Rows in the `stock_prices` schema from `explode_metrics` output (`symbol`, `date`, `metric_name`, `value`).

    A (symbol, date) whose metrics are all null is a day without a bar and yields no row.
    `transactions` goes back to BIGINT.
    """
    daily = (
        exploded.groupBy("symbol", "date")
        # The explicit value list spares Spark a pass over the data to find the metric names.
        .pivot("metric_name", list(METRICS))
        # One value per symbol, date and metric: first() just picks it.
        .agg(F.first("value", ignorenulls=True))
        .where(F.coalesce(*(F.col(metric) for metric in METRICS)).isNotNull())
    )
    return daily.select(
        "symbol",
        "date",
        *(F.col(metric).cast(DoubleType()).alias(metric) for metric in METRICS if metric != "transactions"),
        F.col("transactions").cast("bigint").alias("transactions"),
    )
