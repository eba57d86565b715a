"""Ingestion: bar mapping, strategy choice, and the three strategies agreeing row for row on the simulator."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lib import ingest
from lib.catalog import SCHEMAS
from lib.polygon import ClientSettings
from lib.simulator import SimulatorProcess, universe
from lib.trading_days import trading_days

TICKERS = 12
DAYS = trading_days(dt.date(2024, 2, 27), dt.date(2024, 3, 4))


def test_bar_date_reads_t_in_new_york():
    # grouped daily stamps 16:00 ET; range aggregates stamp 00:00 ET (05:00 UTC in winter).
    assert ingest.bar_date(1709240400000) == dt.date(2024, 2, 29)  # 2024-02-29 16:00 EST
    assert ingest.bar_date(1709182800000) == dt.date(2024, 2, 29)  # 2024-02-29 00:00 EST
    assert ingest.bar_date(1711598400000) == dt.date(2024, 3, 28)  # 2024-03-28 00:00 EDT


def test_agg_mapping_keeps_values_as_received():
    row = ingest.agg_to_row("AAA", {"T": "AAA", "o": 1, "h": 2.5, "l": 0.5, "c": None, "v": -3, "vw": 1.2, "n": 7,
                                    "t": 1709182800000}, "range", dt.datetime(2024, 3, 1))  # fmt: skip
    assert row[1:10] == ("AAA", dt.date(2024, 2, 29), 1.0, 2.5, 0.5, None, -3.0, 1.2, 7)


def test_auto_picks_the_fewest_calls():
    assert ingest.choose_strategy("auto", 20, 300)[0] == "grouped"
    assert ingest.choose_strategy("auto", 252, 10)[0] == "range"
    strategy, reason = ingest.choose_strategy("per_ticker", 2, 3)
    assert strategy == "per_ticker" and "6 bar calls" in reason
    assert ingest.call_counts(252, 11000) == {"grouped": 252, "range": 11000, "per_ticker": 2_772_000}


def test_plans_skip_non_trading_days():
    days = trading_days(dt.date(2024, 3, 28), dt.date(2024, 4, 1))  # Good Friday and a weekend inside
    assert [t.start for t in ingest.plan_tasks("grouped", days, ["A"])] == [dt.date(2024, 3, 28), dt.date(2024, 4, 1)]
    assert len(ingest.plan_tasks("per_ticker", days, ["A", "B"])) == 4
    assert ingest.plan_tasks("range", [], ["A"]) == []


@pytest.fixture(scope="module")
def simulator():
    with SimulatorProcess(tickers=TICKERS) as sim:
        yield sim


def fetch_prices(spark, simulator, strategy):
    settings = ClientSettings(base_url=simulator.base_url, api_key="k", max_attempts=3, backoff_initial_s=0.01)
    symbols = [r["ticker"] for r in universe(TICKERS, 42)]
    result = ingest.fetch_bars(spark, settings, ingest.plan_tasks(strategy, DAYS, symbols), concurrency=4)
    raw = ingest.with_run_ds(result.raw_bars, DAYS[-1])
    assert result.failures.count() == 0
    return ingest.raw_to_prices(raw), result


def test_the_three_strategies_agree_row_for_row(spark, simulator):
    grouped, grouped_result = fetch_prices(spark, simulator, "grouped")
    ranged, _ = fetch_prices(spark, simulator, "range")
    per_ticker, per_ticker_result = fetch_prices(spark, simulator, "per_ticker")
    assert grouped_result.calls == {"grouped": len(DAYS)}
    assert per_ticker_result.calls == {"open_close": len(DAYS) * TICKERS}
    assert grouped.count() == len(DAYS) * TICKERS
    assert_df_equality(grouped, ranged, ignore_row_order=True)
    without_served_only_by_aggs = grouped.withColumn("vwap", F.lit(None).cast("double")).withColumn(
        "transactions", F.lit(None).cast("bigint")
    )
    assert_df_equality(without_served_only_by_aggs, per_ticker, ignore_row_order=True)


def test_duplicate_bars_stay_in_raw_and_collapse_in_prices(spark):
    schema = SCHEMAS["raw_daily_bars"]
    day, ds = dt.date(2024, 3, 28), dt.date(2024, 3, 28)
    early, late = dt.datetime(2024, 3, 28, 21, 0), dt.datetime(2024, 3, 28, 21, 5)
    raw = spark.createDataFrame([
        ("AAA", day, 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 10, ds, "grouped", early),
        ("AAA", day, 1.0, 2.0, 0.5, 1.6, 100.0, 1.2, 10, ds, "grouped", late),
        ("BBB", day, 3.0, 4.0, 2.5, None, 50.0, 3.2, 5, ds, "grouped", early),
    ], schema)  # fmt: skip
    expected = spark.createDataFrame([
        ("AAA", day, 1.0, 2.0, 0.5, 1.6, 100.0, 1.2, 10),
        ("BBB", day, 3.0, 4.0, 2.5, None, 50.0, 3.2, 5),
    ], SCHEMAS["stock_prices"])  # fmt: skip
    assert_df_equality(ingest.raw_to_prices(raw), expected, ignore_row_order=True, ignore_nullable=True)


def test_permanent_failures_become_rows_not_exceptions(spark):
    with SimulatorProcess(tickers=TICKERS, fail_tickers=universe(TICKERS, 42)[0]["ticker"]) as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key="k", max_attempts=2, backoff_initial_s=0.01)
        symbols = [r["ticker"] for r in universe(TICKERS, 42)]
        result = ingest.fetch_bars(spark, settings, ingest.plan_tasks("range", DAYS, symbols), concurrency=4)
        failures = result.failures.collect()
        assert [(f.symbol, f.endpoint, f.http_status, f.attempts) for f in failures] == [
            (symbols[0], "range", 500, 2)
        ]
        assert result.raw_bars.select("symbol").distinct().count() == TICKERS - 1
