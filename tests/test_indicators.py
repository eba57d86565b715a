"""lib.analytics.indicators against TA-Lib itself, and steps.run_indicators: a daily run writes what a backfill writes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import talib
from pyspark.sql import functions as F

from lib.analytics import indicators
from lib.core.trading_days import trading_days
from lib.running import steps
from lib.settings.config import RunConfig
from lib.storage import catalog

D = dt.date


def simulated_bars(symbol: str, days: list[dt.date], seed: int) -> pd.DataFrame:
    """A simulator-like series: a log-normal walk with an intraday range and whole-share volumes."""
    rng = np.random.default_rng(seed)
    n = len(days)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.018, n)))
    open_ = close * np.exp(rng.normal(0, 0.006, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.015, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.015, n))
    volume = rng.integers(200_000, 3_000_000, n).astype(float)
    return pd.DataFrame({"symbol": symbol, "date": days, "open": open_, "high": high, "low": low, "close": close,
                         "volume": volume, "vwap": (high + low + close) / 3, "transactions": 1000})  # fmt: skip


def talib_reference(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    high, low, close, volume = (bars[c].to_numpy(dtype=float) for c in ("high", "low", "close", "volume"))
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    return {
        "rsi_14": talib.RSI(close, timeperiod=14), "macd": macd, "macd_signal": signal, "macd_hist": hist,
        "bb_upper": upper, "bb_middle": middle, "bb_lower": lower, "atr_14": talib.ATR(high, low, close, timeperiod=14),
        "obv": talib.OBV(close, volume),
    }  # fmt: skip


def test_technical_indicators_match_talib(spark):
    days = trading_days(D(2022, 1, 3), D(2023, 3, 31))  # 312 sessions
    bars = pd.concat([simulated_bars("AAA", days, seed=1), simulated_bars("BBB", days[40:], seed=2)])
    ours = indicators.technical_indicators(spark.createDataFrame(bars)).orderBy("symbol", "date").toPandas()
    assert len(ours) == len(bars)
    worst = {}
    for symbol, rows in bars.groupby("symbol"):
        mine = ours[ours["symbol"] == symbol].reset_index(drop=True)
        for column, reference in talib_reference(rows.reset_index(drop=True)).items():
            defined = ~np.isnan(reference)
            # The same lookback as TA-Lib: defined on exactly the same bars.
            assert (mine[column].notna().to_numpy() == defined).all(), (symbol, column)
            values = mine[column].to_numpy(dtype=float)
            after_warm_up = defined & (np.arange(len(rows)) >= 100)
            relative = np.abs(values[after_warm_up] - reference[after_warm_up]) / np.abs(reference[after_warm_up])
            worst[(symbol, column)] = relative.max()
            np.testing.assert_allclose(values[defined], reference[defined], rtol=1e-6, err_msg=f"{symbol} {column}")
    assert max(worst.values()) < 1e-6, worst


def test_rsi_and_obv_by_hand(spark):
    """Fifteen rising closes: RSI 100 from bar 14; OBV the first volume plus every later one."""
    days = trading_days(D(2024, 1, 2), D(2024, 1, 23))[:15]
    rows = [("UP", d, 10.0 + i, 10.0 + i, 10.0 + i, 100.0) for i, d in enumerate(days)]
    frame = spark.createDataFrame(rows, "symbol string, date date, high double, low double, close double, volume double")
    out = indicators.technical_indicators(frame).orderBy("date").toPandas()
    assert out["rsi_14"].iloc[:14].isna().all() and out["rsi_14"].iloc[14] == pytest.approx(100.0)
    assert out["obv"].tolist() == [100.0 * (i + 1) for i in range(15)]
    # True range is 1 every day (the close rises by 1 above the previous close); ATR from bar 14.
    assert out["atr_14"].iloc[14] == pytest.approx(1.0) and out["atr_14"].iloc[:14].isna().all()


def write_prices(spark, config, bars: pd.DataFrame) -> None:
    catalog.ensure_tables(spark, config)
    frame = spark.createDataFrame(bars[[f.name for f in catalog.BAR_SCHEMA]], catalog.BAR_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", frame, "date", bars["date"].min(), bars["date"].max())


def test_daily_run_writes_what_a_backfill_writes(spark, warehouse):
    days = trading_days(D(2023, 1, 3), D(2023, 12, 29))
    bars = pd.concat([simulated_bars("AAA", days, seed=3), simulated_bars("BBB", days[100:], seed=4)])
    span = days[-3:]
    backfill = RunConfig(ds=span[-1], start_ds=span[0], warehouse=str(warehouse), namespace="ind_backfill")
    daily = RunConfig(ds=span[-1], start_ds=span[-1], warehouse=str(warehouse), namespace="ind_daily")
    for config in (backfill, daily):
        write_prices(spark, config, bars)
    steps.run_indicators(spark, backfill)
    report = steps.run_indicators(spark, daily)
    assert report.rows == 2 and report.symbols == 2

    def stored(config):
        return catalog.read_table(spark, config, "technical_indicators").orderBy("symbol", "date").toPandas()

    backfilled, daily_rows = stored(backfill), stored(daily)
    assert sorted(set(backfilled["date"])) == span and set(daily_rows["date"]) == {span[-1]}
    pd.testing.assert_frame_equal(
        backfilled[backfilled["date"] == span[-1]].reset_index(drop=True), daily_rows.reset_index(drop=True), rtol=0, atol=0
    )
    # And the value is TA-Lib's over the whole history (the warm-up is every stored bar).
    reference = talib_reference(bars[bars["symbol"] == "AAA"].reset_index(drop=True))
    assert daily_rows.loc[daily_rows["symbol"] == "AAA", "rsi_14"].item() == pytest.approx(reference["rsi_14"][-1], rel=1e-9)
    # A re-run replaces its dates: no duplicate keys.
    steps.run_indicators(spark, daily)
    assert catalog.read_table(spark, daily, "technical_indicators").groupBy("symbol", "date").count().filter(
        F.col("count") > 1).count() == 0  # fmt: skip


def test_daily_runs_continue_from_the_stored_state_to_the_bit(spark, warehouse):
    """Three daily runs fold on from the state stored with the day before, and write exactly what one backfill writes:
    for a long history (AAA), a later listing (BBB), a halt longer than the window a daily run reads (CCC: folded
    from its first bar on its return) and a listing inside the daily days (DDD)."""
    days = trading_days(D(2023, 1, 3), D(2023, 12, 29))
    halted = set(days[-70:-3])
    ccc = simulated_bars("CCC", days, seed=5)
    bars = pd.concat([simulated_bars("AAA", days, seed=3), simulated_bars("BBB", days[100:], seed=4),
                      ccc[~ccc["date"].isin(halted)], simulated_bars("DDD", days[-2:], seed=6)])  # fmt: skip
    backfill = RunConfig(ds=days[-1], start_ds=days[-3], warehouse=str(warehouse), namespace="ind_state_backfill")
    first = RunConfig(ds=days[-4], start_ds=days[-8], warehouse=str(warehouse), namespace="ind_state_daily")
    for config in (backfill, first):
        write_prices(spark, config, bars)
    steps.run_indicators(spark, backfill)
    steps.run_indicators(spark, first)
    folded_from_first_bar = {}
    for day in days[-3:]:
        daily = RunConfig(ds=day, start_ds=day, warehouse=str(warehouse), namespace="ind_state_daily")
        folded_from_first_bar[day] = steps.run_indicators(spark, daily).from_first_bar

    def stored(config):
        rows = catalog.read_table(spark, config, "technical_indicators").filter(F.col("date") >= F.lit(days[-3]))
        return rows.orderBy("symbol", "date").toPandas()

    expected, got = stored(backfill), stored(first)
    assert set(expected["symbol"]) == {"AAA", "BBB", "CCC", "DDD"}
    pd.testing.assert_frame_equal(got, expected, rtol=0, atol=0)
    # Only CCC is folded from its first bar (its bands' window reaches back before the days read, until 19 bars after
    # its return); AAA, BBB and DDD continue from their stored state every day.
    assert folded_from_first_bar == {day: 1 for day in days[-3:]}
    reference = talib_reference(bars[bars["symbol"] == "CCC"].reset_index(drop=True))
    assert got.loc[got["symbol"] == "CCC", "obv"].iloc[-1] == reference["obv"][-1]
