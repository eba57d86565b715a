"""Price anomalies: days whose return, opening gap or volume sits far outside the series' own recent past.

A series is a security when the frame has security_id (lib.analytics.series), else a symbol: a renamed security's
first bar under its new ticker continues its series, a reused ticker's first bar starts a new one.

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

from lib.analytics.series import carried, series_key

KINDS = ("return", "gap", "volume")
# |score| above which a day is flagged, per kind. A normal series exceeds 5 robust sigmas about once in
# 3.5 million days; fat-tailed daily returns do more often, which is what is worth a look.
DEFAULT_THRESHOLDS = {"return": 5.0, "gap": 5.0, "volume": 5.0}
DEFAULT_WINDOW = 60  # trailing bars for the median and MAD
MIN_BARS = 20  # fewer trailing bars than this: no score
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def measures(daily: DataFrame) -> DataFrame:
    """symbol, date and one column per kind: log return close to close, log gap open to previous close, log volume
    (and security_id when `daily` has it: the previous close is then the security's).

    Needs symbol, date, open, close, volume (one row per symbol and date; null or non-positive values give null).
    """
    names = carried(daily)
    by_date = Window.partitionBy(series_key(daily)).orderBy("date")
    previous_close = F.lag("close").over(by_date)

    def log_ratio(numerator, denominator):
        return F.when((numerator > 0) & (denominator > 0), F.log(numerator / denominator))

    return daily.select(
        *names,
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


def trailing_scores(
    values: np.ndarray, window: int, min_bars: int, starts: np.ndarray | None = None, rows: np.ndarray | None = None
) -> np.ndarray:
    """The robust z-score of values[i] against the non-null values among the `window` before it (NaN: none).

    NaN where the value is missing, fewer than min_bars past values exist, or their MAD is 0. `starts[i]`: the
    index where row i's series begins (several series laid end to end; default one series), so no window reaches
    into the previous series. `rows`: score only these rows (indices); the result has one score per row scored.
    """
    n = len(values)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    starts = np.zeros(n, dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
    padded = np.concatenate([np.full(window, np.nan), values])
    scores = np.empty(len(rows))
    for a in range(0, len(rows), _CHUNK_ROWS):  # a window per row is window doubles: chunks bound the memory
        chunk = rows[a : a + _CHUNK_ROWS]
        past = np.lib.stride_tricks.sliding_window_view(padded, window)[chunk]  # past[k, j] = values[i - window + j]
        positions = chunk[:, None] - window + np.arange(window)[None, :]
        past = np.where(positions >= starts[chunk][:, None], past, np.nan)
        counts = np.sum(~np.isnan(past), axis=1)
        median = _middle(np.sort(past, axis=1), counts)  # NaNs sort last
        mad = _middle(np.sort(np.abs(past - median[:, None]), axis=1), counts)
        value = values[chunk]
        usable = (counts >= min_bars) & ~np.isnan(value) & (mad > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[a : a + len(chunk)] = np.where(usable, (value - median) / (MAD_TO_SIGMA * np.where(usable, mad, 1.0)), np.nan)
    return scores


_CHUNK_ROWS = 100_000
_BUCKETS_PER_PARTITION = 2  # groups of symbols per shuffle partition for the numpy pass


def robust_scores(
    daily: DataFrame, window: int = DEFAULT_WINDOW, min_bars: int = MIN_BARS, since: dt.date | None = None
) -> DataFrame:
    """symbol, date, kind, value, score (and security_id when `daily` has it) for every bar and kind with at least
    `min_bars` trailing values (at most `window`: a window shorter than min_bars scores once it is full, rather
    than never).

    value is the day's measure (see `measures`); score its robust z-score against the previous `window` bars.
    A trailing window with MAD 0 (a constant series) gives no score. `since`: score only the bars from that date on
    (the earlier ones still count as their trailing window).

    The series go to numpy in a few large groups of symbols (applyInPandas over a hash of the symbol), each scored
    at once by `trailing_scores`: sorting a collect_list window per bar in Spark took over ten minutes for a year
    of the whole market, and a group per symbol pays pandas' overhead 33,000 times. The medians take the mean of
    the two middle values, as a hand computation does.
    """
    min_bars = min(min_bars, window)
    key, names = series_key(daily), carried(daily)
    schema = SCORE_SCHEMA + "".join(f", {name} string" for name in names[1:])
    per_kind = measures(daily).select(
        *names, "date", F.explode(F.array(*[F.struct(F.lit(k).alias("kind"), F.col(f"`{k}`").alias("value"))
                                             for k in KINDS])).alias("m"),
    ).select(*names, "date", "m.kind", "m.value")  # fmt: skip
    buckets = int(daily.sparkSession.conf.get("spark.sql.shuffle.partitions")) * _BUCKETS_PER_PARTITION

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values([key, "kind", "date"], ignore_index=True).drop(columns="bucket")
        n = len(frame)
        first = np.ones(n, dtype=bool)
        first[1:] = (frame[key].to_numpy()[1:] != frame[key].to_numpy()[:-1]) | (
            frame["kind"].to_numpy()[1:] != frame["kind"].to_numpy()[:-1]
        )
        starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        rows = np.arange(n) if since is None else np.flatnonzero((frame["date"] >= since).to_numpy())
        values = frame["value"].to_numpy(dtype="float64", na_value=np.nan)
        scores = trailing_scores(values, window, min_bars, starts, rows)
        keep = ~np.isnan(scores)
        return frame.iloc[rows[keep]].assign(score=scores[keep])

    bucketed = per_kind.withColumn("bucket", F.pmod(F.hash(key), F.lit(buckets)))
    return bucketed.groupBy("bucket").applyInPandas(score, schema)


def flag(scores: DataFrame, thresholds: Mapping[str, float] | None = None) -> DataFrame:
    """The rows of `scores` (robust_scores) with |score| above their kind's threshold, with a threshold column.

    `thresholds` overrides DEFAULT_THRESHOLDS per kind, e.g. {"volume": 4.0}; a kind missing from both is not flagged.
    """
    chosen = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    threshold = F.lit(None).cast("double")
    for kind, value in chosen.items():
        threshold = F.when(F.col("kind") == kind, F.lit(float(value))).otherwise(threshold)
    return scores.withColumn("threshold", threshold).filter(F.abs(F.col("score")) > F.col("threshold"))
