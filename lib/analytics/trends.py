"""Trend analytics on daily bars: returns, moving averages, volatility, drawdowns, movers and volume anomalies.

Every function takes the daily `stock_prices` frame (one row per `symbol` and `date`; days without a bar
have no row) and works per series in date order with Spark window functions and built-ins only. A series is a
security when the frame has security_id (lib.analytics.series; a renamed security's bars under both tickers, never
two securities that shared a ticker), else a symbol; "symbol" below means the series, and a row keeps the ticker it
traded under. Only `return_correlations` brings a small result back to the driver.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lib.analytics.series import carried, series_key
from lib.core.trading_days import trading_days

if TYPE_CHECKING:
    import pandas as pd

TRADING_DAYS_PER_YEAR = 252
# Scales a median absolute deviation to a standard deviation for normally distributed data.
MAD_TO_STDEV = 1.4826
# Scales a mean absolute deviation to a standard deviation; used only when the MAD is zero.
MEAN_AD_TO_STDEV = 1.2533


def _require_columns(df: DataFrame, needed: Iterable[str], caller: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"trends.{caller} needs columns {sorted(needed)}; missing {missing}, found {sorted(df.columns)}.")


def _by_symbol(daily: DataFrame) -> Window:
    return Window.partitionBy(series_key(daily)).orderBy("date")


def _last_bars(daily: DataFrame, n: int) -> Window:
    """The current bar and the n - 1 bars before it, of the same series."""
    return _by_symbol(daily).rowsBetween(-(n - 1), Window.currentRow)


def _last_ticker() -> Column:
    """In an aggregation per series: the ticker of its last bar (a security's name now)."""
    return F.max_by("symbol", "date").alias("symbol")


def _per_series(daily: DataFrame) -> tuple[list[str], list[Column]]:
    """groupBy keys and aggregations that give one row per series with its symbol (the last bar's ticker)."""
    key = series_key(daily)
    return ([key], [_last_ticker()]) if key != "symbol" else (["symbol"], [])


# The sessions over which dollar volume chooses the symbols 04_trends draws and 05_forecast forecasts.
LEADER_SESSIONS = 20


def leaders_by_day(daily: DataFrame, days: Sequence[dt.date], n: int, sessions: int = LEADER_SESSIONS) -> DataFrame:
    """day, symbol, dollar_volume: for each of `days`, the n symbols with a bar that day and the largest sum of
    close * volume over the `sessions` NYSE sessions up to it (a day without a bar adds nothing), ties broken by
    symbol. Needs `symbol`, `date`, `close`, `volume`, reaching back `sessions` - 1 sessions before the first day.
    With security_id, the sum runs over the security's bars under any ticker, and security_id comes along (symbol
    is the ticker it traded as on the day).

    A function of the day and the bars up to it, so a daily run and a backfill choose the same symbols. With traded
    closes and volumes the choice ignores splits and dividends (a split changes price and volume inversely).
    """
    _require_columns(daily, ["symbol", "date", "close", "volume"], "leaders_by_day")
    spark = daily.sparkSession
    if not days or n <= 0:
        return spark.createDataFrame([], "day date, symbol string, dollar_volume double"
                                     + "".join(f", {n} string" for n in carried(daily)[1:]))  # fmt: skip
    calendar = trading_days(min(days) - dt.timedelta(days=2 * sessions + 14), max(days))
    numbered = spark.createDataFrame(list(enumerate(calendar)), "session int, date date")
    trailing = Window.partitionBy(series_key(daily)).orderBy("session").rangeBetween(-(sessions - 1), 0)
    ranked = (
        daily.filter(F.col("close").isNotNull())
        .join(F.broadcast(numbered), "date")
        .select(*carried(daily), "date", F.sum(F.col("close") * F.col("volume")).over(trailing).alias("dollar_volume"))
        .filter(F.col("date").isin(list(days)))
        .withColumn("rank", F.row_number().over(
            Window.partitionBy("date").orderBy(F.col("dollar_volume").desc_nulls_last(), "symbol")))
    )  # fmt: skip
    return ranked.filter(F.col("rank") <= n).select(F.col("date").alias("day"), "symbol", "dollar_volume",
                                                    *carried(daily)[1:])  # fmt: skip


def with_returns(daily: DataFrame) -> DataFrame:
    """Add `daily_return` and `cumulative_return`.

    Needs `symbol`, `date`, `close`. `daily_return` = close / previous bar's close of the same symbol - 1
    (null on the first bar); `cumulative_return` = close / the symbol's first non-null close - 1.
    """
    _require_columns(daily, ["symbol", "date", "close"], "with_returns")
    by_symbol = _by_symbol(daily)
    from_start = by_symbol.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return daily.withColumn("daily_return", F.col("close") / F.lag("close").over(by_symbol) - 1).withColumn(
        "cumulative_return", F.col("close") / F.first("close", ignorenulls=True).over(from_start) - 1
    )


def monthly_returns(daily: DataFrame) -> DataFrame:
    """One row per `symbol` and `month_start`: `first_close`, `last_close`, `monthly_return` = last / first - 1
    (with security_id: per security and month, symbol the ticker of its last bar in the month).

    Needs `symbol`, `date`, `close`. First and last close are those of the month's first and last bar
    with a close (bars with a null close are skipped). A month with a single bar has a return of 0.
    """
    _require_columns(daily, ["symbol", "date", "close"], "monthly_returns")
    keys, named = _per_series(daily)
    return (
        daily.where(F.col("close").isNotNull())
        .withColumn("month_start", F.trunc("date", "month"))
        .groupBy(*keys, "month_start")
        .agg(
            *named,
            F.min_by("close", "date").alias("first_close"),
            F.max_by("close", "date").alias("last_close"),
        )
        .withColumn("monthly_return", F.col("last_close") / F.col("first_close") - 1)
    )


def rolling_volatility(daily: DataFrame, window: int = 20) -> DataFrame:
    """Add `daily_return`, `cumulative_return` and `rolling_volatility`.

    Needs `symbol`, `date`, `close`. `rolling_volatility` is the sample standard deviation of the last
    `window` daily returns times sqrt(252), null until `window` returns exist (the bar `window` + 1 on).
    """
    if window < 2:
        raise ValueError(f"rolling_volatility needs window >= 2 to compute a standard deviation, got {window}.")
    last = _last_bars(daily, window)
    returns = F.col("daily_return")
    annualised = F.stddev_samp(returns).over(last) * math.sqrt(TRADING_DAYS_PER_YEAR)
    return with_returns(daily).withColumn("rolling_volatility", F.when(F.count(returns).over(last) == window, annualised))


def moving_averages(daily: DataFrame, windows: Sequence[int] = (20, 50, 200)) -> DataFrame:
    """Add `ma_<n>` for each n in windows: the mean close of the last n bars, null until n bars exist.

    Needs `symbol`, `date`, `close`.
    """
    _require_columns(daily, ["symbol", "date", "close"], "moving_averages")
    result = daily
    for n in windows:
        if n < 1:
            raise ValueError(f"moving_averages windows must be >= 1, got {list(windows)}.")
        last = _last_bars(daily, n)
        result = result.withColumn(f"ma_{n}", F.when(F.count(F.lit(1)).over(last) == n, F.avg("close").over(last)))
    return result


def drawdowns(daily: DataFrame) -> DataFrame:
    """Add `running_peak` (highest close so far) and `drawdown` = close / running_peak - 1 (0 at a new peak).

    Needs `symbol`, `date`, `close`.
    """
    _require_columns(daily, ["symbol", "date", "close"], "drawdowns")
    so_far = _by_symbol(daily).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return daily.withColumn("running_peak", F.max("close").over(so_far)).withColumn(
        "drawdown", F.col("close") / F.col("running_peak") - 1
    )


def max_drawdown(daily: DataFrame) -> DataFrame:
    """One row per `symbol`: `max_drawdown`, the deepest drawdown (<= 0; 0 when the price never fell); with
    security_id, one per security (symbol: its last bar's ticker), security_id last.

    Needs `symbol`, `date`, `close`.
    """
    keys, named = _per_series(daily)
    return (
        drawdowns(daily)
        .groupBy(*keys)
        .agg(*named, F.min("drawdown").alias("max_drawdown"))
        .select("symbol", "max_drawdown", *carried(daily)[1:])
    )


def top_movers(monthly_returns_df: DataFrame, n: int = 5) -> DataFrame:
    """The n biggest gainers and n biggest losers of each month.

    Needs `symbol`, `month_start`, `monthly_return` (the output of `monthly_returns`). Returns
    `month_start`, `direction` ('gainer' or 'loser'), `rank` (1 = biggest move), `symbol`, `monthly_return`.
    Only positive returns can be gainers and only negative returns losers, so a month where everything
    fell has no gainers. Ties are ranked by symbol.
    """
    _require_columns(monthly_returns_df, ["symbol", "month_start", "monthly_return"], "top_movers")
    by_month = Window.partitionBy("month_start")
    ret = F.col("monthly_return")
    gainers = (
        monthly_returns_df.where(ret > 0)
        .withColumn("rank", F.row_number().over(by_month.orderBy(ret.desc(), F.col("symbol"))))
        .withColumn("direction", F.lit("gainer"))
    )
    losers = (
        monthly_returns_df.where(ret < 0)
        .withColumn("rank", F.row_number().over(by_month.orderBy(ret.asc(), F.col("symbol"))))
        .withColumn("direction", F.lit("loser"))
    )
    columns = ["month_start", "direction", "rank", "symbol", "monthly_return"]
    return gainers.select(columns).unionByName(losers.select(columns)).where(F.col("rank") <= n)


def _sorted_median(sorted_values: Column) -> Column:
    """Median of an ascending array column without nulls (null when empty)."""
    size = F.size(sorted_values)
    # `get` is 0-based and gives null out of bounds, so an empty array yields null instead of an error.
    lower = F.get(sorted_values, F.floor((size - 1) / 2).cast("int"))
    upper = F.get(sorted_values, F.floor(size / 2).cast("int"))
    return (lower + upper) / 2


def volume_anomalies(daily: DataFrame, window: int = 20, z: float = 3.5) -> DataFrame:
    """Add `volume_median`, `volume_mad`, `volume_z` and `is_anomaly`.

    Needs `symbol`, `date`, `volume`. The history is the symbol's previous `window` bars (not the current
    one). `volume_z` = (volume - median) / (1.4826 * MAD); when the MAD is 0 (more than half the history
    equal) the scale falls back to 1.2533 * mean absolute deviation. `volume_z` is null unless all of the
    previous `window` bars have a volume (so it is null on the first `window` bars). When the history is
    perfectly constant, `volume_z` is 0 if the volume equals it and null otherwise.
    `is_anomaly` is |volume_z| > z, true for any departure from a perfectly constant history, and false
    when there is not enough history.
    """
    _require_columns(daily, ["symbol", "date", "volume"], "volume_anomalies")
    if window < 1:
        raise ValueError(f"volume_anomalies needs window >= 1, got {window}.")
    history = _by_symbol(daily).rowsBetween(-window, -1)
    history_values = F.array_sort(F.collect_list("volume").over(history))

    def from_median(v: Column) -> Column:
        return F.abs(v - F.col("volume_median"))

    deviations = F.array_sort(F.transform(F.col("_history"), from_median))
    total_deviation = F.aggregate(F.col("_history"), F.lit(0.0), lambda acc, v: acc + from_median(v))
    mean_abs_dev = total_deviation / F.size("_history")
    scale = F.when(F.col("volume_mad") > 0, F.col("volume_mad") * MAD_TO_STDEV).otherwise(
        F.col("_mean_abs_dev") * MEAN_AD_TO_STDEV
    )
    deviation = F.col("volume") - F.col("volume_median")
    enough_history = F.size("_history") == window
    return (
        daily.withColumn("_history", history_values)
        .withColumn("volume_median", F.when(enough_history, _sorted_median(F.col("_history"))))
        .withColumn("volume_mad", _sorted_median(deviations))
        .withColumn("_mean_abs_dev", mean_abs_dev)
        .withColumn(
            "volume_z",
            F.when(scale > 0, deviation / scale).when(deviation == 0, F.lit(0.0)),
        )
        .withColumn(
            "is_anomaly",
            F.coalesce(
                F.when(scale > 0, F.abs(F.col("volume_z")) > z).otherwise(deviation != 0),
                F.lit(False),
            ),
        )
        .drop("_history", "_mean_abs_dev")
    )


def return_correlations(daily: DataFrame, symbols: Sequence[str]) -> pd.DataFrame:
    """Correlation matrix (pandas DataFrame, symbols x symbols) of the daily returns of `symbols`.

    Needs `symbol`, `date`, `close`. Only the returns of the given symbols (a handful, e.g. from
    `leaders_by_day`) leave Spark; pairs are correlated over the dates both have a return.
    Rows and columns follow the order of `symbols`; a symbol without returns gives a row of NaN.
    """
    import pandas as pd

    _require_columns(daily, ["symbol", "date", "close"], "return_correlations")
    symbols = list(dict.fromkeys(symbols))
    # Returns are computed per symbol, so filtering to the symbols first changes nothing but the cost.
    returns = (
        with_returns(daily.where(F.col("symbol").isin(symbols)))
        .where(F.col("daily_return").isNotNull())
        .select("symbol", "date", "daily_return")
        .toPandas()
    )
    if returns.empty:
        wide = pd.DataFrame(columns=symbols, dtype="float64")
    else:
        wide = returns.pivot(index="date", columns="symbol", values="daily_return").astype("float64")
    corr = wide.corr().reindex(index=symbols, columns=symbols)
    corr.index.name = "symbol"
    corr.columns.name = "symbol"
    return corr


def trend_summary(daily: DataFrame) -> DataFrame:
    """One row per `symbol`: `start_date`, `end_date`, `bars`, `first_close`, `last_close`, `total_return`
    (last / first - 1), `annualized_volatility` (sample stdev of simple daily returns times sqrt(252), null with
    fewer than two returns) and `max_drawdown` (<= 0). With security_id: one row per security, symbol the ticker
    of its last bar, security_id last.

    Needs `symbol`, `date`, `close`; bars with a null close are left out.
    """
    _require_columns(daily, ["symbol", "date", "close"], "trend_summary")
    closes = daily.where(F.col("close").isNotNull())
    keys, named = _per_series(daily)
    per_symbol = with_returns(closes).groupBy(*keys).agg(
        *named,
        F.min("date").alias("start_date"),
        F.max("date").alias("end_date"),
        F.count("*").alias("bars"),
        F.min_by("close", "date").alias("first_close"),
        F.max_by("close", "date").alias("last_close"),
        (F.stddev_samp("daily_return") * math.sqrt(TRADING_DAYS_PER_YEAR)).alias("annualized_volatility"),
    )
    deepest = max_drawdown(closes)
    if named:  # per security: the symbol is per_symbol's (the last bar's ticker)
        deepest = deepest.drop("symbol")
    return (
        per_symbol.join(deepest, keys)
        .withColumn("total_return", F.col("last_close") / F.col("first_close") - 1)
        .select("symbol", "start_date", "end_date", "bars", "first_close", "last_close", "total_return",
                "annualized_volatility", "max_drawdown", *carried(daily)[1:])  # fmt: skip
    )
