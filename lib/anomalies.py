"""Price anomalies: days whose return, opening gap or volume sits far outside the symbol's own recent past.

The score is a robust z-score, (x - median) / (1.4826 * MAD) over the previous `window` bars (the day itself
excluded), so one spike neither hides itself nor the next. Run it on the adjusted series (lib.prices.adjust_frame,
`total_return`): there a split or a dividend moves nothing, so a day such an action explains is never flagged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

KINDS = ("return", "gap", "volume")
# |score| above which a day is flagged, per kind. A normal series exceeds 5 robust sigmas about once in
# 3.5 million days; fat-tailed daily returns do more often, which is what is worth a look.
DEFAULT_THRESHOLDS = {"return": 5.0, "gap": 5.0, "volume": 5.0}
DEFAULT_WINDOW = 60  # trailing bars for the median and MAD
MIN_BARS = 20  # fewer trailing bars than this: no score
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def _let(value, body):
    """body(value) with `value` evaluated once: Spark would otherwise copy the expression into every use of it."""
    return F.element_at(F.transform(F.array(value), body), 1)


def _median(values):
    """The median of an array column of doubles without nulls (null when empty)."""

    def middle(ordered):
        n = F.size(ordered)
        lower = F.element_at(ordered, F.floor((n + 1) / 2).cast("int"))
        upper = F.element_at(ordered, F.floor(n / 2).cast("int") + 1)
        return F.when(n > 0, (lower + upper) / 2)

    return _let(F.array_sort(values), middle)


def _robust_z(value, past, min_bars: int):
    """(value - median(past)) / (1.4826 * MAD(past)); null with fewer than min_bars values or a MAD of 0."""

    def with_median(median):
        mad = _median(F.transform(past, lambda v: F.abs(v - median)))
        return _let(mad, lambda m: F.when(m > 0, (value - median) / (MAD_TO_SIGMA * m)))

    return F.when((F.size(past) >= min_bars) & value.isNotNull(), _let(_median(past), with_median))


def measures(daily: DataFrame) -> DataFrame:
    """symbol, date and one column per kind: log return close to close, log gap open to previous close, log volume.

    Needs symbol, date, open, close, volume (one row per symbol and date; null or non-positive values give null).
    """
    by_date = Window.partitionBy("symbol").orderBy("date")
    previous_close = F.lag("close").over(by_date)

    def log_ratio(numerator, denominator):
        return F.when((numerator > 0) & (denominator > 0), F.log(numerator / denominator))

    return daily.select(
        "symbol",
        "date",
        log_ratio(F.col("close"), previous_close).alias("return"),
        log_ratio(F.col("open"), previous_close).alias("gap"),
        F.when(F.col("volume") > 0, F.log(F.col("volume"))).alias("volume"),
    )


def robust_scores(
    daily: DataFrame, window: int = DEFAULT_WINDOW, min_bars: int = MIN_BARS, since: dt.date | None = None
) -> DataFrame:
    """symbol, date, kind, value, score for every bar and kind with at least `min_bars` trailing values.

    value is the day's measure (see `measures`); score its robust z-score against the previous `window` bars.
    A trailing window with MAD 0 (a constant series) gives no score. `since`: score only the bars from that date on
    (the earlier ones still count as their trailing window), so a daily run sorts one day's windows, not its history's.
    """
    per_kind = measures(daily).select(
        "symbol", "date", F.explode(F.array(*[F.struct(F.lit(k).alias("kind"), F.col(f"`{k}`").alias("value"))
                                             for k in KINDS])).alias("m"),
    ).select("symbol", "date", "m.kind", "m.value")  # fmt: skip
    by_kind = Window.partitionBy("symbol", "kind").orderBy("date").rowsBetween(-window, -1)
    history = per_kind.withColumn("past", F.filter(F.collect_list("value").over(by_kind), lambda v: v.isNotNull()))
    if since is not None:
        history = history.filter(F.col("date") >= F.lit(since))
    scored = history.withColumn("score", _robust_z(F.col("value"), F.col("past"), min_bars))
    return scored.filter(F.col("score").isNotNull()).select("symbol", "date", "kind", "value", "score")


def flag(scores: DataFrame, thresholds: Mapping[str, float] | None = None) -> DataFrame:
    """The rows of `scores` (robust_scores) with |score| above their kind's threshold, with a threshold column.

    `thresholds` overrides DEFAULT_THRESHOLDS per kind, e.g. {"volume": 4.0}; a kind missing from both is not flagged.
    """
    chosen = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    threshold = F.lit(None).cast("double")
    for kind, value in chosen.items():
        threshold = F.when(F.col("kind") == kind, F.lit(float(value))).otherwise(threshold)
    return scores.withColumn("threshold", threshold).filter(F.abs(F.col("score")) > F.col("threshold"))
