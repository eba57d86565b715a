"""Technical indicators with TA-Lib's definitions (RSI, MACD, Bollinger bands, ATR, OBV), computed in Spark.

The windowed indicators (Bollinger bands, OBV) are plain window functions. The recursive ones (Wilder's RSI and
ATR, the EMAs of MACD) run as one `aggregate` over each symbol's bars collected into an array sorted by date: the
fold applies TA-Lib's own recurrence, seed and order of floating-point operations bar after bar, so the values
equal TA-Lib's on the same bars (to rounding) and stay stable over any history. The closed form, an EMA as a
window sum of x_k * (1 - alpha)^-k, needs weights that overflow a double after a few thousand bars (13/11 to the
5,000th power for the 12-bar EMA): exact on paper, unusable on 20 years of bars.

TA-Lib's conventions kept (lookbacks and seeds, with no extra unstable period):
- RSI(14): gains and losses of the first 14 changes averaged (SMA seed, first value on bar 14), then Wilder's
  avg = (avg * 13 + x) / 14; RSI = 100 * gain / (gain + loss), 0 when both are below 1e-8.
- ATR(14): true range from bar 1 (max(high, prev close) - min(low, prev close)); SMA of TR[1..14] on bar 14, then
  Wilder's smoothing.
- MACD(12, 26, 9): both EMAs start on bar 25, the slow one seeded with the SMA of bars 0..25 and the fast one with
  the SMA of bars 14..25 (TA-Lib aligns them); macd = fast - slow; the signal is the 9-bar EMA of macd seeded with
  the SMA of macd on bars 25..33; macd, signal and histogram are given from bar 33.
- Bollinger(20, 2): SMA(20) +- 2 population standard deviations, from bar 19.
- OBV: starts at the first bar's volume, then adds or subtracts each bar's volume by the sign of the close's change.

Bar numbers count from each symbol's first bar: the indicators of a day depend on every bar before it. A caller
gives either a symbol's whole history, or the state its fold reached on the bar before a day (STATE_COLUMNS, stored
with every row of technical_indicators) and the bars from there on, with the BB_PERIOD - 1 bars before for the
windows: the fold then continues with the same operations in the same order, so the values are the same to the bit
(lib.running.steps.run_indicators does this for daily runs).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lib.analytics.series import carried, series_key

RSI_PERIOD = 14
ATR_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_DEVIATIONS = 20, 2.0
INDICATOR_COLUMNS = ("rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14", "obv")

# TA-Lib's bar numbers (0-based) where each recursion takes its seed.
MACD_START = MACD_SLOW - 1  # 25: the slow EMA's first value, and the fast one's (aligned)
FAST_SEED_FROM = MACD_START - (MACD_FAST - 1)  # 14: the fast EMA's seed averages bars 14..25
SIGNAL_START = MACD_START + MACD_SIGNAL - 1  # 33: the first signal, and the first MACD output
TA_ZERO = 1e-8  # TA_IS_ZERO


def _k(period: int) -> float:
    return 2.0 / (period + 1)  # TA-Lib's PER_TO_K


STATE_FIELDS = ("gain", "loss", "atr", "fast", "slow", "signal", "obv")
# The fold's state after a bar, stored with its row (the fold's field names in STATE_FIELDS order; obv is its own).
STATE_COLUMNS = ("bar_number", "wilder_gain", "wilder_loss", "wilder_atr", "ema_fast", "ema_slow", "ema_signal", "obv")


def _state_type() -> str:
    return "struct<i:int,date:date," + ",".join(f"{name}:double" for name in STATE_FIELDS) + ">"


def _wilder(i: Column, previous: Column, value: Column, period: int, first: int) -> Column:
    """Sums from bar `first` to `period` (+ `first` - 1), their mean there, then TA-Lib's (avg * (n - 1) + x) / n."""
    seed = first + period - 1
    return (
        F.when(i < first, F.lit(0.0))
        .when(i < seed, previous + value)
        .when(i == seed, (previous + value) / period)
        .otherwise((previous * (period - 1) + value) / period)
    )


def _ema(i: Column, previous: Column, value: Column, period: int, first: int) -> Column:
    """Sums from bar `first`; their mean on bar `first` + `period` - 1; then TA-Lib's (x - ema) * k + ema."""
    seed = first + period - 1
    return (
        F.when(i < first, F.lit(0.0))
        .when(i < seed, previous + value)
        .when(i == seed, (previous + value) / period)
        .otherwise((value - previous) * _k(period) + previous)
    )


def _step(states: Column, bar: Column) -> Column:
    """One bar of the fold: the recursions' state after `bar`, appended to the states so far (the last is the previous)."""
    state = F.element_at(states, -1)
    i = bar["i"]
    fast = _ema(i, state["fast"], bar["close"], MACD_FAST, FAST_SEED_FROM)
    slow = _ema(i, state["slow"], bar["close"], MACD_SLOW, 0)
    after = F.struct(
        i.alias("i"),
        bar["date"].alias("date"),
        _wilder(i, state["gain"], bar["gain"], RSI_PERIOD, 1).alias("gain"),
        _wilder(i, state["loss"], bar["loss"], RSI_PERIOD, 1).alias("loss"),
        _wilder(i, state["atr"], bar["tr"], ATR_PERIOD, 1).alias("atr"),
        fast.alias("fast"),
        slow.alias("slow"),
        _ema(i, state["signal"], fast - slow, MACD_SIGNAL, MACD_START).alias("signal"),
        # TA-Lib's OBV: the first bar's volume, then plus or minus each bar's volume by the sign of the change.
        F.when(i == 0, bar["volume"]).otherwise(state["obv"] + bar["signed_volume"]).alias("obv"),
    )
    return F.concat(states, F.array(after))


def technical_indicators(daily: DataFrame, prior: DataFrame | None = None, start=None) -> DataFrame:
    """The indicators of every bar of `daily` (symbol, date, high, low, close, volume; one row per symbol and date).

    A series is a security when `daily` has security_id (lib.analytics.series): its bars under every ticker it traded
    as, and never another security's bars under the same ticker; else a symbol. Below, "symbol" means the series.
    Returns symbol, date, INDICATOR_COLUMNS, the fold's state after the bar (STATE_COLUMNS) and security_id when
    `daily` has it (`prior` then names its series by security_id too); a value is null before its TA-Lib lookback.
    Without `prior`, bar numbers count from each symbol's first bar in `daily` (give its whole history). With
    `prior` (symbol and STATE_COLUMNS: the state after each symbol's last bar before `start`), only the bars from
    `start` on are folded and returned, continuing each symbol's state; `daily` must hold the BB_PERIOD - 1 bars of
    each symbol before `start` (the bands' window and the previous close) and every symbol of `daily` must be in
    `prior`. Bars with a null close should be dropped first: they would break the recursions.
    """
    key, names = series_key(daily), carried(daily)
    by_date = Window.partitionBy(key).orderBy("date")
    last_20 = by_date.rowsBetween(-(BB_PERIOD - 1), Window.currentRow)
    change = F.col("close") - F.lag("close").over(by_date)
    bars = daily.select(
        *names,
        "date",
        "close",
        "volume",
        (F.row_number().over(by_date) - 1).alias("i"),
        F.when(change > 0, change).otherwise(F.lit(0.0)).alias("gain"),
        F.when(change < 0, -change).otherwise(F.lit(0.0)).alias("loss"),
        F.coalesce(
            F.greatest("high", F.lag("close").over(by_date)) - F.least("low", F.lag("close").over(by_date)), F.lit(0.0)
        ).alias("tr"),
        F.when(change > 0, F.col("volume")).when(change < 0, -F.col("volume")).otherwise(F.lit(0.0))
        .cast("double").alias("signed_volume"),
        F.when(F.count("close").over(last_20) == BB_PERIOD, F.avg("close").over(last_20)).alias("bb_middle"),
        F.stddev_pop("close").over(last_20).alias("bb_sd"),
    )  # fmt: skip
    # The fold starts from the stored state, or from one all-zero state (bar -1); the start is dropped after.
    if prior is None:
        initial = F.array(F.struct(F.lit(-1).alias("i"), F.lit(None).cast("date").alias("date"),
                                   *[F.lit(0.0).alias(name) for name in STATE_FIELDS]).cast(_state_type()))  # fmt: skip
    else:
        fold_names = ("i", *STATE_FIELDS[:-1], "obv")  # STATE_COLUMNS' names in the fold
        stored = prior.select(key, *[F.col(c).alias(f"_{f}") for c, f in zip(STATE_COLUMNS, fold_names, strict=True)])
        bars = bars.filter(F.col("date") >= F.lit(start)).join(stored, key)
        bars = bars.withColumn("i", F.col("_i") + F.row_number().over(by_date))
        initial = F.array(F.struct(F.first("_i").alias("i"), F.lit(None).cast("date").alias("date"),
                                   *[F.first(f"_{name}").alias(name) for name in STATE_FIELDS]).cast(_state_type()))  # fmt: skip
    ordered = F.array_sort(F.collect_list(F.struct("i", "date", "close", "gain", "loss", "tr", "volume", "signed_volume")))
    states = (
        bars.groupBy(key)
        .agg(ordered.alias("bars"), initial.alias("initial"))
        .select(key, F.inline(F.slice(F.aggregate("bars", F.col("initial"), _step), 2, 1 << 30)))
    )
    i, gain, loss = F.col("i"), F.col("gain"), F.col("loss")
    macd = F.when(i >= SIGNAL_START, F.col("fast") - F.col("slow"))
    signal = F.when(i >= SIGNAL_START, F.col("signal"))
    band = BB_DEVIATIONS * F.col("bb_sd")
    return bars.select(*names, "date", "bb_middle", "bb_sd").join(states, [key, "date"]).select(
        "symbol",
        "date",
        F.when(i < RSI_PERIOD, F.lit(None).cast("double"))
        .when(F.abs(gain + loss) < TA_ZERO, F.lit(0.0))
        .otherwise(100.0 * (gain / (gain + loss)))
        .alias("rsi_14"),
        macd.alias("macd"),
        signal.alias("macd_signal"),
        (macd - signal).alias("macd_hist"),
        (F.col("bb_middle") + band).alias("bb_upper"),
        "bb_middle",
        (F.col("bb_middle") - band).alias("bb_lower"),
        F.when(i >= ATR_PERIOD, F.col("atr")).alias("atr_14"),
        "obv",
        i.alias("bar_number"),
        gain.alias("wilder_gain"),
        loss.alias("wilder_loss"),
        F.col("atr").alias("wilder_atr"),
        F.col("fast").alias("ema_fast"),
        F.col("slow").alias("ema_slow"),
        F.col("signal").alias("ema_signal"),
        *names[1:],
    )
