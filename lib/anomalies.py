"""Price anomalies: days whose return, opening gap or volume sits far outside the symbol's own recent past.

The score is a robust z-score, (x - median) / (1.4826 * MAD) over the previous `window` bars (the day itself
excluded), so one spike neither hides itself nor the next. Run it on the adjusted series (lib.prices.adjust_frame,
`total_return`): there a split or a dividend moves nothing, so a day such an action explains is never flagged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

KINDS = ("return", "gap", "volume")
# |score| above which a day is flagged, per kind. A normal series exceeds 5 robust sigmas about once in
# 3.5 million days; fat-tailed daily returns do more often, which is what is worth a look.
DEFAULT_THRESHOLDS = {"return": 5.0, "gap": 5.0, "volume": 5.0}
DEFAULT_WINDOW = 60  # trailing bars for the median and MAD
MIN_BARS = 20  # fewer trailing bars than this: no score
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


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


SCORE_SCHEMA = "symbol string, date date, kind string, value double, score double"


def _middle(ordered: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Medians of rows sorted ascending with their NaNs last, `counts` values each: (s[(n-1)//2] + s[n//2]) / 2."""
    lower = np.take_along_axis(ordered, np.maximum((counts - 1) // 2, 0)[:, None], axis=1)[:, 0]
    upper = np.take_along_axis(ordered, np.minimum(counts // 2, ordered.shape[1] - 1)[:, None], axis=1)[:, 0]
    return (lower + upper) / 2


def trailing_scores(values: np.ndarray, window: int, min_bars: int) -> np.ndarray:
    """The robust z-score of each value against the non-null values among the `window` before it (NaN: none).

    NaN where the value is missing, fewer than min_bars past values exist, or their MAD is 0.
    """
    n = len(values)
    past = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.full(window, np.nan), values]), window)[:n]
    counts = np.sum(~np.isnan(past), axis=1)
    ordered = np.sort(past, axis=1)  # NaNs sort last
    median = _middle(ordered, counts)
    deviations = np.sort(np.abs(past - median[:, None]), axis=1)
    mad = _middle(deviations, counts)
    usable = (counts >= min_bars) & ~np.isnan(values) & (mad > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(usable, (values - median) / (MAD_TO_SIGMA * np.where(usable, mad, 1.0)), np.nan)


def robust_scores(
    daily: DataFrame, window: int = DEFAULT_WINDOW, min_bars: int = MIN_BARS, since: dt.date | None = None
) -> DataFrame:
    """symbol, date, kind, value, score for every bar and kind with at least `min_bars` trailing values.

    value is the day's measure (see `measures`); score its robust z-score against the previous `window` bars.
    A trailing window with MAD 0 (a constant series) gives no score. `since`: score only the bars from that date on
    (the earlier ones still count as their trailing window).

    Each symbol and kind is one numpy computation over its bars (applyInPandas): sorting a window per bar in Spark
    (collect_list over a sliding frame, then array_sort) took over ten minutes for a year of the whole market.
    The medians take the mean of the two middle values, so an even window gives what a hand computation gives.
    """
    per_kind = measures(daily).select(
        "symbol", "date", F.explode(F.array(*[F.struct(F.lit(k).alias("kind"), F.col(f"`{k}`").alias("value"))
                                             for k in KINDS])).alias("m"),
    ).select("symbol", "date", "m.kind", "m.value")  # fmt: skip

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("date", ignore_index=True)
        scores = trailing_scores(frame["value"].to_numpy(dtype="float64", na_value=np.nan), window, min_bars)
        keep = ~np.isnan(scores)
        if since is not None:
            keep &= (frame["date"] >= since).to_numpy()
        return frame.loc[keep, ["symbol", "date", "kind", "value"]].assign(score=scores[keep])

    return per_kind.groupBy("symbol", "kind").applyInPandas(score, SCORE_SCHEMA)


def flag(scores: DataFrame, thresholds: Mapping[str, float] | None = None) -> DataFrame:
    """The rows of `scores` (robust_scores) with |score| above their kind's threshold, with a threshold column.

    `thresholds` overrides DEFAULT_THRESHOLDS per kind, e.g. {"volume": 4.0}; a kind missing from both is not flagged.
    """
    chosen = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    threshold = F.lit(None).cast("double")
    for kind, value in chosen.items():
        threshold = F.when(F.col("kind") == kind, F.lit(float(value))).otherwise(threshold)
    return scores.withColumn("threshold", threshold).filter(F.abs(F.col("score")) > F.col("threshold"))
