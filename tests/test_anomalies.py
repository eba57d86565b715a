"""lib.analytics.anomalies and steps.run_anomalies: a split explains its as-traded jump, an injected spike is flagged."""

from __future__ import annotations

import datetime as dt
import statistics

import numpy as np
import pandas as pd
import pytest

from lib.analytics import anomalies
from lib.core.trading_days import trading_days
from lib.running import steps
from lib.settings.config import RunConfig
from lib.storage import catalog

D = dt.date
ACTIONS_DDL = (
    "symbol STRING, action_type STRING, ex_date DATE, split_from DOUBLE, split_to DOUBLE, cash_amount DOUBLE, "
    "currency STRING, declaration_date DATE, record_date DATE, pay_date DATE, source_id STRING"
)
DAYS = trading_days(D(2024, 1, 2), D(2024, 6, 28))
SPLIT_DAY, SPIKE_DAY = DAYS[90], DAYS[105]


def as_traded_bars() -> pd.DataFrame:
    """A quiet walk; a 2-for-1 split on SPLIT_DAY (as traded: prices halve, volume doubles); a +25% close on SPIKE_DAY."""
    rng = np.random.default_rng(11)
    n = len(DAYS)
    close = 80.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    close[DAYS.index(SPIKE_DAY)] *= 1.25
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    volume = np.round(1_000_000 * np.exp(rng.normal(0, 0.1, n)))
    after_split = np.array([d >= SPLIT_DAY for d in DAYS])
    open_, close = np.where(after_split, open_ / 2, open_), np.where(after_split, close / 2, close)
    volume = np.where(after_split, volume * 2, volume)
    return pd.DataFrame({"symbol": "SPL", "date": DAYS, "open": open_, "high": np.maximum(open_, close) * 1.001,
                         "low": np.minimum(open_, close) * 0.999, "close": close, "volume": volume,
                         "vwap": close, "transactions": 100})  # fmt: skip


def test_the_as_traded_split_jump_scores_as_an_anomaly(spark):
    """The control: without adjusting, the split day is a -70% log return, far beyond any threshold."""
    scores = anomalies.flag(anomalies.robust_scores(spark.createDataFrame(as_traded_bars()))).toPandas()
    kinds_on_split = set(scores.loc[scores["date"] == SPLIT_DAY, "kind"])
    assert {"return", "gap", "volume"} <= kinds_on_split


def reference_scores(values: list[float | None], window: int, min_bars: int) -> list[float | None]:
    """The robust z-score by its definition, one bar at a time with the statistics module."""
    out = []
    for i, value in enumerate(values):
        past = [v for v in values[max(0, i - window) : i] if v is not None]
        if value is None or len(past) < min_bars:
            out.append(None)
            continue
        median = statistics.median(past)
        mad = statistics.median([abs(v - median) for v in past])
        out.append((value - median) / (anomalies.MAD_TO_SIGMA * mad) if mad > 0 else None)
    return out


def test_trailing_scores_equal_the_definition_with_gaps_ties_and_a_flat_stretch():
    rng = np.random.default_rng(5)
    values = [float(v) for v in np.round(rng.normal(0, 1, 160), 2)]  # rounded: ties, even and odd windows
    for i in (3, 40, 41, 42, 100):
        values[i] = None  # missing measures (a null close) leave the window shorter
    values[120:150] = [1.5] * 30  # a flat stretch: MAD 0, no score
    for window, min_bars in ((7, 4), (20, 20), (60, 20)):
        expected = reference_scores(values, window, min_bars)
        got = anomalies.trailing_scores(np.array([np.nan if v is None else v for v in values]), window, min_bars)
        assert [np.isnan(g) for g in got] == [e is None for e in expected]
        assert [g for g in got if not np.isnan(g)] == pytest.approx([e for e in expected if e is not None], rel=1e-12)
        assert sum(e is not None for e in expected) > 50
        assert window > 20 or all(e is None for e in expected[141:150])  # a window inside the flat stretch


def test_robust_scores_in_spark_equal_the_definition(spark):
    """Three symbols scored together (one numpy pass over series laid end to end): no window crosses a symbol."""
    one = as_traded_bars()
    frames = {"SPL": one, "REV": one.assign(symbol="REV", close=one["close"].to_numpy()[::-1]),
              "LATE": one.iloc[100:].assign(symbol="LATE", close=one["close"].to_numpy()[100:] * 3)}  # fmt: skip
    scores = anomalies.robust_scores(spark.createDataFrame(pd.concat(frames.values())), window=30, min_bars=10)
    scores = scores.toPandas()
    for symbol, frame in frames.items():
        closes = frame["close"].to_numpy()
        returns = [None] + [float(np.log(b / a)) for a, b in zip(closes[:-1], closes[1:], strict=True)]
        expected = {d: e for d, e in zip(frame["date"], reference_scores(returns, 30, 10), strict=True) if e is not None}
        got = scores[(scores["kind"] == "return") & (scores["symbol"] == symbol)].set_index("date")["score"].to_dict()
        assert got.keys() == expected.keys(), symbol
        assert [got[d] for d in expected] == pytest.approx(list(expected.values()), rel=1e-12), symbol


def test_scoring_since_a_day_keeps_the_days_before_it_as_its_window(spark):
    """A daily run scores only its day; its scores equal those of the whole history, filtered to the day on."""
    frame = spark.createDataFrame(as_traded_bars())
    since = DAYS[100]
    keys = ["symbol", "date", "kind"]
    whole = anomalies.robust_scores(frame).toPandas().sort_values(keys, ignore_index=True)
    part = anomalies.robust_scores(frame, since=since).toPandas().sort_values(keys, ignore_index=True)
    assert len(part) == 3 * (len(DAYS) - 100)  # every kind of every day from `since`, each with a full window
    pd.testing.assert_frame_equal(part, whole[whole["date"] >= since].reset_index(drop=True))


def test_run_anomalies_ignores_the_split_and_flags_the_spike(spark, warehouse):
    config = RunConfig(ds=DAYS[-1], start_ds=DAYS[80], warehouse=str(warehouse), namespace="anomalies_split")
    catalog.ensure_tables(spark, config)
    bars = spark.createDataFrame(as_traded_bars(), catalog.BAR_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", bars, "date", DAYS[0], DAYS[-1])
    split = [("SPL", "split", SPLIT_DAY, 1.0, 2.0, None, None, None, None, None, "S-SPL")]
    catalog.merge_corporate_actions(spark, config, spark.createDataFrame(split, ACTIONS_DDL), DAYS[-1])

    report = steps.run_anomalies(spark, config)
    flagged = report.anomalies
    assert not (flagged["date"] == SPLIT_DAY).any(), flagged[flagged["date"] == SPLIT_DAY]
    spike = flagged[(flagged["date"] == SPIKE_DAY) & (flagged["kind"] == "return")]
    assert len(spike) == 1
    assert spike["value"].item() > 0.2 and spike["score"].item() > spike["threshold"].item() == 5.0
    assert (flagged["ds"] == config.ds).all() and flagged["date"].between(config.start_ds, config.ds).all()

    # Thresholds are plain parameters; a re-run replaces the span's rows.
    stricter = steps.run_anomalies(spark, config, thresholds={"return": 1e6, "gap": 1e6, "volume": 1e6})
    assert stricter.anomalies.empty
    assert catalog.read_table(spark, config, "anomalies").count() == 0
