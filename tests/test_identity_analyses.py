"""Analyses run per security (contract: "One security, many tickers"): indicators, anomalies, price checks and
forecasts continue across a ticker change and never mix two securities that shared a ticker; 04/05 read a ticker as
its security's whole history.

Tiny frames for the adjustment by security; then one warehouse filled from the simulator (100 tickers, seed 42) over
2024-04-15..2024-09-20, which holds the rename DXSB -> CWHG (2024-06-06) and the ticker VIHY of two companies (the
first delisted 2024-04-24, the second listed 2024-08-20). The references are TA-Lib on the stored bars and the
simulator's own records, never the code under test.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib.analytics import anomalies, indicators, prices
from lib.core.trading_days import trading_days
from lib.ingestion.rest_client import ClientSettings
from lib.quality import checks
from lib.running import steps
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess, corporate_actions, securities, ticker_changes
from lib.storage import catalog
from tests.test_indicators import talib_reference

D = dt.date
KEY = "identity-analyses-key-7a2f"
TICKERS, SEED = 100, 42
FIRST, LAST = D(2024, 4, 15), D(2024, 9, 20)
RENAME = {"old": "DXSB", "new": "CWHG", "date": D(2024, 6, 6), "figi": "BBGWWN3Q8CB1"}
REUSE = {"ticker": "VIHY", "delisted": D(2024, 4, 24), "listed": D(2024, 8, 20), "old_figi": "BBGN66NH82G8",
         "new_figi": "BBGFLT4HTJP6"}  # fmt: skip
# 04 and 05 over days around the rename, asked for by either ticker.
TRENDS_DS, TRENDS_LOOKBACK = D(2024, 6, 28), 45
FORECAST_FROM, FORECAST_DS, HORIZON = D(2024, 6, 3), D(2024, 6, 10), 2


# -- the adjustment by security, on tiny frames ---------------------------------------------------------------------

BARS_DDL = "symbol string, date date, open double, high double, low double, close double, volume double, vwap double, " \
           "security_id string"  # fmt: skip


def _action(symbol, ex_date, split_from, split_to, security_id):
    return (symbol, "split", ex_date, split_from, split_to, None, None, None, None, None, f"{symbol}-{ex_date}", ex_date,
            ex_date, security_id)  # fmt: skip


def test_a_split_under_the_new_ticker_adjusts_the_bars_under_the_old_one_and_no_other_company(spark):
    days = [D(2024, 3, d) for d in (4, 5, 6, 7, 8)]

    def bar(symbol, day, close, security_id):
        return (symbol, day, close, close, close, close, 1000.0, close, security_id)

    bars = spark.createDataFrame(
        [bar("OLD", days[0], 100.0, "S1"), bar("NEW", days[1], 102.0, "S1"), bar("NEW", days[2], 51.0, "S1"),
         bar("OLD", days[3], 10.0, "S2"), bar("OLD", days[4], 11.0, "S2")],
        BARS_DDL,
    )  # fmt: skip
    schema = T.StructType(catalog.SCHEMAS["corporate_actions"].fields + [T.StructField("security_id", T.StringType())])
    # S1 splits 1:2 ex the 6th, as NEW; S2 splits 1:4 ex the 8th, as OLD (the ticker S1 traded as until the 5th).
    actions = spark.createDataFrame([_action("NEW", days[2], 1.0, 2.0, "S1"), _action("OLD", days[4], 1.0, 4.0, "S2")], schema)

    adjusted = prices.adjust_frame(bars, actions, "split", key="security_id")

    expected = spark.createDataFrame(
        [("OLD", days[0], 50.0, 50.0, 50.0, 50.0, 2000.0, 50.0, "S1"),
         ("NEW", days[1], 51.0, 51.0, 51.0, 51.0, 2000.0, 51.0, "S1"),
         bar("NEW", days[2], 51.0, "S1"),
         ("OLD", days[3], 2.5, 2.5, 2.5, 2.5, 4000.0, 2.5, "S2"),
         bar("OLD", days[4], 11.0, "S2")],
        BARS_DDL,
    )  # fmt: skip
    assert adjusted.columns == bars.columns
    assert_approx_df_equality(adjusted, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_a_reused_tickers_obv_starts_at_the_new_companys_first_bar(spark):
    days = trading_days(D(2024, 3, 4), D(2024, 3, 12))[:6]
    rows = [("REUS", d, c, c, c, v, s) for d, c, v, s in zip(days, [10.0, 11.0, 12.0, 50.0, 49.0, 51.0],
                                                              [100.0, 200.0, 300.0, 7.0, 8.0, 9.0], ["S1"] * 3 + ["S2"] * 3,
                                                              strict=True)]  # fmt: skip
    frame = spark.createDataFrame(rows, "symbol string, date date, high double, low double, close double, volume double, "
                                        "security_id string")  # fmt: skip
    out = indicators.technical_indicators(frame).orderBy("date").toPandas()
    assert out["obv"].tolist() == [100.0, 300.0, 600.0, 7.0, 7.0 - 8.0, 7.0 - 8.0 + 9.0]
    assert out["bar_number"].tolist() == [0, 1, 2, 0, 1, 2]
    assert out["symbol"].tolist() == ["REUS"] * 6 and out["security_id"].tolist() == ["S1"] * 3 + ["S2"] * 3


# -- a warehouse from the simulator ---------------------------------------------------------------------------------


def _config(warehouse, start: dt.date, ds: dt.date, **more) -> RunConfig:
    return RunConfig.from_params(
        warehouse=str(warehouse), namespace="identity_analyses", ds=str(ds), start_ds=str(start), strategy="grouped",
        simulator_tickers=TICKERS, wap_branch="", **more,
    )  # fmt: skip


@pytest.fixture(scope="module")
def filled(spark, warehouse):
    """The warehouse after a range run of 01, 02, the indicators and the anomalies over FIRST..LAST."""
    config = _config(warehouse, FIRST, LAST)
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as sim:
        steps.run_ingest(spark, config, ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2))
    steps.run_rollup(spark, config)
    steps.run_indicators(spark, config)
    steps.run_anomalies(spark, config)
    return config


def _stored(spark, config, name: str, security_id: str) -> pd.DataFrame:
    return catalog.read_table(spark, config, name).filter(F.col("security_id") == security_id).orderBy("date").toPandas()


def test_the_warehouse_holds_the_rename_and_the_reuse(spark, filled):
    """The scenario, from the simulator's records: no split or dividend of these securities in the span, so the
    as-traded bars are the split-adjusted series the indicators read."""
    assert any(c["old_ticker"] == RENAME["old"] and c["date"] == RENAME["date"] for c in ticker_changes(TICKERS, SEED))
    figis = {p["composite_figi"] for p in securities(TICKERS, SEED) if p["ticker"] == REUSE["ticker"]}
    assert figis == {REUSE["old_figi"], REUSE["new_figi"]}
    tickers = {RENAME["old"], RENAME["new"], REUSE["ticker"]}
    assert not [a for a in corporate_actions(TICKERS, SEED)
                if a["ticker"] in tickers and FIRST <= dt.date.fromisoformat(str(a["ex_date"])) <= LAST]  # fmt: skip
    renamed = _stored(spark, filled, "stock_prices", RENAME["figi"])
    assert set(renamed.loc[renamed["date"] < RENAME["date"], "symbol"]) == {RENAME["old"]}
    assert set(renamed.loc[renamed["date"] >= RENAME["date"], "symbol"]) == {RENAME["new"]}
    old = _stored(spark, filled, "stock_prices", REUSE["old_figi"])
    new = _stored(spark, filled, "stock_prices", REUSE["new_figi"])
    assert old["date"].max() < REUSE["delisted"] and new["date"].min() == REUSE["listed"]
    # The second company trades at another level: its first bar against the first's last close is a jump.
    ratio = new["close"].iloc[0] / old["close"].iloc[-1]
    assert not 1 / 1.4 < ratio < 1.4, ratio


def _assert_talib(rows: pd.DataFrame, bars: pd.DataFrame) -> None:
    assert rows["date"].tolist() == bars["date"].tolist() and rows["symbol"].tolist() == bars["symbol"].tolist()
    for column, reference in talib_reference(bars.reset_index(drop=True)).items():
        defined = ~np.isnan(reference)
        assert (rows[column].notna().to_numpy() == defined).all(), column
        np.testing.assert_allclose(rows[column].to_numpy(dtype=float)[defined], reference[defined], rtol=1e-6, err_msg=column)


def test_indicators_continue_across_a_rename_as_talib_over_both_tickers_bars(spark, filled):
    bars = _stored(spark, filled, "stock_prices", RENAME["figi"])
    rows = _stored(spark, filled, "technical_indicators", RENAME["figi"])
    assert set(bars["symbol"]) == {RENAME["old"], RENAME["new"]}
    _assert_talib(rows, bars)
    after = rows[rows["date"] >= RENAME["date"]]
    assert after["macd"].notna().any(), "the MACD must be defined after the rename: the series continued"


def test_a_reused_tickers_indicators_are_the_new_companys_alone(spark, filled):
    new_bars = _stored(spark, filled, "stock_prices", REUSE["new_figi"])
    rows = _stored(spark, filled, "technical_indicators", REUSE["new_figi"])
    _assert_talib(rows, new_bars)
    assert rows["bar_number"].iloc[0] == 0 and rows["obv"].iloc[0] == new_bars["volume"].iloc[0]
    _assert_talib(_stored(spark, filled, "technical_indicators", REUSE["old_figi"]),
                  _stored(spark, filled, "stock_prices", REUSE["old_figi"]))  # fmt: skip


def test_no_anomaly_and_no_failed_price_check_at_a_ticker_change(spark, filled):
    changes = {(RENAME["new"], RENAME["date"]), (REUSE["ticker"], REUSE["listed"])}
    flagged = catalog.read_table(spark, filled, "anomalies").toPandas()
    assert not {(r.symbol, r.date) for r in flagged.itertuples()} & changes
    assert flagged["security_id"].notna().all()
    # The renamed security's series goes on: the day of the rename has a return scored against the old ticker's days.
    history = steps.adjusted_history(spark, filled, "total_return", security_ids=[RENAME["figi"]])
    scored = anomalies.robust_scores(history, since=RENAME["date"]).filter(F.col("date") == F.lit(RENAME["date"]))
    assert {r.kind for r in scored.collect()} == set(anomalies.KINDS)

    results = checks.run_checks(steps.quality_inputs(spark, filled), filled.ds, filled.span_days, filled.quality,
                                only=["price_jumps", "outliers"])  # fmt: skip
    try:
        for result in results:
            failed = {(r.symbol, r.date) for r in result.failures.select("symbol", "date").collect()}
            assert not failed & changes, (result.name, result.details)
    finally:
        checks.release(results)


@pytest.fixture(scope="module")
def by_ticker(spark, warehouse, filled):
    """04 and 05 asked for the renamed security by its new ticker and by its old one."""
    reports = {}
    for ticker in (RENAME["new"], RENAME["old"]):
        trends_config = _config(warehouse, TRENDS_DS, TRENDS_DS, symbols=[ticker], lookback_days=TRENDS_LOOKBACK)
        forecast_config = _config(warehouse, FORECAST_FROM, FORECAST_DS, symbols=[ticker], horizon_days=HORIZON)
        reports[ticker] = (steps.run_trends(spark, trends_config, lookback_days=TRENDS_LOOKBACK),
                           steps.run_forecast(spark, forecast_config))  # fmt: skip
    return reports


@pytest.mark.parametrize("ticker", [RENAME["new"], RENAME["old"]])
def test_trends_of_a_ticker_are_its_securitys_whole_history(spark, filled, by_ticker, ticker):
    report, _ = by_ticker[ticker]
    start = TRENDS_DS - dt.timedelta(days=TRENDS_LOOKBACK)
    bars = _stored(spark, filled, "stock_prices", RENAME["figi"])
    expected_days = bars.loc[bars["date"].between(start, TRENDS_DS), "date"].tolist()
    assert report.symbols == [ticker]
    assert report.daily["date"].tolist() == expected_days  # under DXSB before the rename, CWHG after
    assert min(expected_days) < RENAME["date"] <= max(expected_days)
    assert set(report.daily["symbol"]) == {ticker} and set(report.daily["security_id"]) == {RENAME["figi"]}
    # One series: the first bar under the new ticker has its return from the old ticker's last close.
    first_new = report.daily[report.daily["date"] >= RENAME["date"]].iloc[0]
    assert not np.isnan(first_new["daily_return"])
    (summary,) = report.summary_table.itertuples()
    assert (summary.symbol, summary.security_id, summary.bars) == (ticker, RENAME["figi"], len(expected_days))
    stored = catalog.read_table(spark, filled, "trend_summary").filter(F.col("security_id") == RENAME["figi"]).collect()
    assert [(r.symbol, r.ds) for r in stored] == [(RENAME["new"], TRENDS_DS)]  # the ticker of its last bar


@pytest.mark.parametrize("ticker", [RENAME["new"], RENAME["old"]])
def test_forecasts_of_a_ticker_are_its_securitys(spark, filled, by_ticker, ticker):
    _, report = by_ticker[ticker]
    assert report.symbols == [ticker]
    assert set(report.closes["symbol"]) == {RENAME["old"], RENAME["new"]}
    forecasts = report.forecasts
    assert set(forecasts["security_id"]) == {RENAME["figi"]}
    origins = trading_days(FORECAST_FROM, FORECAST_DS)
    assert sorted(set(forecasts["origin_date"])) == origins
    # The row's symbol is the ticker traded on the origin date.
    expected = [RENAME["old"] if d < RENAME["date"] else RENAME["new"] for d in forecasts["origin_date"]]
    assert forecasts["symbol"].tolist() == expected
    # A forecast made under the old ticker is scored by the close traded under the new one.
    closes = _stored(spark, filled, "stock_prices", RENAME["figi"]).set_index("date")["close"]
    crossing = forecasts[(forecasts["origin_date"] < RENAME["date"]) & (forecasts["target_date"] >= RENAME["date"])]
    assert len(crossing) > 0
    np.testing.assert_allclose(crossing["actual_close"], [closes[d] for d in crossing["target_date"]], rtol=1e-12)
