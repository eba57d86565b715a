"""The monthly rollup: daily `stock_prices` rows folded into one array per symbol, month and metric, and back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

METRICS = ("open", "high", "low", "close", "volume", "vwap", "transactions")

MONTHLY_SCHEMA = StructType(
    [
        StructField("symbol", StringType()),
        StructField("metric_name", StringType()),
        StructField("metric_array", ArrayType(DoubleType())),
        StructField("month_start", DateType()),
        StructField("from_date", DateType()),
    ]
)

# Column order of the `stock_prices` table, which `to_daily_rows` rebuilds.
DAILY_COLUMNS = ("symbol", "date", *METRICS)

_APPLIED_MONTHS_SCHEMA = StructType(
    [
        StructField("month_start", DateType()),
        StructField("applied_days_of_month", ArrayType(IntegerType())),
        StructField("last_applied_day", DateType()),
    ]
)


def month_start(day: dt.date) -> dt.date:
    """The first calendar day of `day`'s month."""
    return day.replace(day=1)


def _applied_months(spark, applied_days: Sequence[dt.date]) -> DataFrame:
    """One tiny row per touched month: which days of it are applied now, and the latest of them."""
    days_by_month: dict[dt.date, set[dt.date]] = {}
    for day in applied_days:
        days_by_month.setdefault(month_start(day), set()).add(day)
    rows = [(month, sorted(day.day for day in days), max(days)) for month, days in sorted(days_by_month.items())]
    return spark.createDataFrame(rows, _APPLIED_MONTHS_SCHEMA)


def _slot_value(day_of_month: Column) -> Column:
    """Value of one slot: the applied day's price if that day is applied now, else the previous array's value.

    Safe under ANSI mode: a map lookup of a missing key (a symbol without a bar that day) is null, and
    the previous array is indexed only below its size (element_at past the end raises under ANSI).
    """
    return F.when(F.array_contains("applied_days_of_month", day_of_month), F.col("applied_values")[day_of_month]).when(
        day_of_month <= F.size("previous_array"), F.element_at("previous_array", day_of_month)
    )


def _field_of(metric: str):
    """A (day, bar) -> bar.metric lambda for transform_values (Spark counts a lambda's parameters)."""
    return lambda _day, bar: bar[metric]


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
    applied_months = _applied_months(spark, applied_days)
    touched_months = sorted({month_start(day) for day in applied_days})

    # Group once per (symbol, month) with every metric of a day in one struct, then fan out to the metrics:
    # a seventh of the rows to shuffle compared with unpivoting first.
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
    per_metric = F.array(
        *(
            F.struct(
                F.lit(metric).alias("metric_name"),
                F.transform_values("bars", _field_of(metric)).alias("applied_values"),
            )
            for metric in METRICS
        )
    )
    applied_values = bars_by_day.select("symbol", "month_start", F.explode(per_metric).alias("metric")).select(
        "symbol", "month_start", "metric.metric_name", "metric.applied_values"
    )

    if existing is None:
        existing = spark.createDataFrame([], MONTHLY_SCHEMA)
    existing_in_touched_months = existing.where(F.col("month_start").isin(touched_months))
    previous_arrays = existing_in_touched_months.select(
        "symbol", "metric_name", "month_start", F.col("metric_array").alias("previous_array")
    )
    previous_from_dates = existing_in_touched_months.groupBy("month_start").agg(F.max("from_date").alias("previous_from_date"))
    months = applied_months.join(F.broadcast(previous_from_dates), "month_start", "left").select(
        "month_start",
        "applied_days_of_month",
        # greatest() skips nulls: a month new to the table takes its latest applied day.
        F.greatest("previous_from_date", "last_applied_day").alias("from_date"),
    )

    return (
        applied_values.join(previous_arrays, ["symbol", "metric_name", "month_start"], "full")
        .join(F.broadcast(months), "month_start")
        .select(
            F.col("symbol").cast(StringType()),
            F.col("metric_name").cast(StringType()),
            F.transform(F.sequence(F.lit(1), F.dayofmonth("from_date")), _slot_value)
            .cast(ArrayType(DoubleType()))
            .alias("metric_array"),
            F.col("month_start").cast(DateType()),
            F.col("from_date").cast(DateType()),
        )
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
