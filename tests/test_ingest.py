"""Ingestion: bar mapping, strategy choice, and the three strategies agreeing row for row on the simulator."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lib.core.trading_days import trading_days
from lib.ingestion import fanout
from lib.ingestion.rest_client import ClientSettings
from lib.simulator import SimulatorProcess, universe
from lib.storage.catalog import BAR_SCHEMA, SCHEMAS

TICKERS = 12
DAYS = trading_days(dt.date(2024, 2, 27), dt.date(2024, 3, 4))


def test_bar_date_reads_t_in_new_york():
    # grouped daily stamps 16:00 ET; range aggregates stamp 00:00 ET (05:00 UTC in winter).
    assert fanout.bar_date(1709240400000) == dt.date(2024, 2, 29)  # 2024-02-29 16:00 EST
    assert fanout.bar_date(1709182800000) == dt.date(2024, 2, 29)  # 2024-02-29 00:00 EST
    assert fanout.bar_date(1711598400000) == dt.date(2024, 3, 28)  # 2024-03-28 00:00 EDT


def test_agg_mapping_keeps_values_as_received():
    row = fanout.agg_to_row("AAA", {"T": "AAA", "o": 1, "h": 2.5, "l": 0.5, "c": None, "v": -3, "vw": 1.2, "n": 7,
                                    "t": 1709182800000}, "range", dt.datetime(2024, 3, 1))  # fmt: skip
    assert row[1:10] == ("AAA", dt.date(2024, 2, 29), 1.0, 2.5, 0.5, None, -3.0, 1.2, 7)


@pytest.mark.parametrize(
    "agg",
    [{"T": 123, "o": 1, "t": 1709182800000}, {"T": "AAA", "o": "one", "t": 1709182800000}, {"T": "AAA", "o": 1}],
    ids=["ticker-not-a-string", "price-not-a-number", "no-timestamp"],
)
def test_a_misshapen_aggregate_is_refused_with_what_was_wrong(agg):
    # Rows skip Spark's per-row type check (verifySchema=False), so the mapping itself refuses a wrong type.
    with pytest.raises((KeyError, ValueError)):
        fanout.agg_to_row(None, agg, "grouped", dt.datetime(2024, 3, 1))


def test_auto_picks_the_fewest_calls():
    assert fanout.choose_strategy("auto", 20, 300)[0] == "grouped"
    assert fanout.choose_strategy("auto", 252, 10)[0] == "range"
    strategy, reason = fanout.choose_strategy("per_ticker", 2, 3)
    assert strategy == "per_ticker" and "6 bar calls" in reason
    assert fanout.call_counts(252, 11000) == {"grouped": 252, "range": 11000, "per_ticker": 2_772_000}


def test_plans_skip_non_trading_days():
    days = trading_days(dt.date(2024, 3, 28), dt.date(2024, 4, 1))  # Good Friday and a weekend inside
    assert [t.start for t in fanout.plan_tasks("grouped", days, ["A"])] == [dt.date(2024, 3, 28), dt.date(2024, 4, 1)]
    assert len(fanout.plan_tasks("per_ticker", days, ["A", "B"])) == 4
    assert fanout.plan_tasks("range", [], ["A"]) == []


@pytest.fixture(scope="module")
def simulator():
    with SimulatorProcess(tickers=TICKERS) as sim:
        yield sim


def fetch_prices(spark, simulator, strategy):
    settings = ClientSettings(base_url=simulator.base_url, api_key="k", max_attempts=3, backoff_initial_s=0.01)
    symbols = [r["ticker"] for r in universe(TICKERS, 42)]
    result = fanout.fetch_bars(spark, settings, fanout.plan_tasks(strategy, DAYS, symbols), concurrency=4)
    raw = fanout.with_run_ds(result.raw_bars, DAYS[-1])
    assert result.failures.count() == 0
    return fanout.raw_to_prices(raw), result


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
    ], BAR_SCHEMA)  # fmt: skip
    assert_df_equality(fanout.raw_to_prices(raw), expected, ignore_row_order=True, ignore_nullable=True)


def test_permanent_failures_become_rows_not_exceptions(spark):
    symbols = [r["ticker"] for r in universe(TICKERS, 42)]
    with SimulatorProcess(tickers=TICKERS, fail_tickers=symbols[0]) as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key="k", max_attempts=2, backoff_initial_s=0.01)
        ranged = fanout.fetch_bars(spark, settings, fanout.plan_tasks("range", DAYS, symbols), concurrency=4)
        per_ticker = fanout.fetch_bars(spark, settings, fanout.plan_tasks("per_ticker", DAYS, symbols), concurrency=4)
    assert [(f.symbol, f.endpoint, f.http_status, f.attempts) for f in ranged.failures.collect()] == [
        (symbols[0], "range", 500, 2)
    ]
    assert ranged.raw_bars.select("symbol").distinct().count() == TICKERS - 1
    assert sorted((f.symbol, f.endpoint, f.http_status, f.attempts) for f in per_ticker.failures.collect()) == [
        (symbols[0], "open_close", 500, 2)
    ] * len(DAYS)
    assert per_ticker.raw_bars.filter(F.col("symbol") == symbols[0]).count() == 0
    assert per_ticker.raw_bars.select("symbol").distinct().count() == TICKERS - 1
    assert per_ticker.retries == {"open_close": len(DAYS)}  # one retry each, then the dead letter


def bars_as_received(result):
    return result.raw_bars.drop("received_at")


@pytest.mark.parametrize("strategy", ["per_ticker", "range"])
def test_transient_faults_are_retried_until_every_bar_arrives_once(spark, simulator, strategy):
    symbols = [r["ticker"] for r in universe(TICKERS, 42)]
    tasks = fanout.plan_tasks(strategy, DAYS, symbols)
    clean = ClientSettings(base_url=simulator.base_url, api_key="k")
    expected = bars_as_received(fanout.fetch_bars(spark, clean, tasks, concurrency=4))
    # Retry-After 0 keeps the test fast; that 429s wait for Retry-After is tested on the clients.
    with SimulatorProcess(tickers=TICKERS, fault_rate=0.3, faults="429,500,503,reset,malformed,truncated",
                          retry_after=0, fault_seed=11) as faulty:  # fmt: skip
        settings = ClientSettings(base_url=faulty.base_url, api_key="k", max_attempts=12,
                                  backoff_initial_s=0.01, backoff_max_s=0.05)  # fmt: skip
        result = fanout.fetch_bars(spark, settings, tasks, concurrency=4)
        received = bars_as_received(result)
        assert result.failures.count() == 0
        assert sum(result.retries.values()) > 0, "a 30 % fault rate must have caused retries"
        assert result.total_calls == len(tasks) + sum(result.retries.values())
        assert received.groupBy("symbol", "date").count().filter("count > 1").count() == 0
        assert_df_equality(received, expected, ignore_row_order=True)


def test_a_refused_key_stops_the_fan_out_without_retries(spark):
    from lib.core.errors import PolygonAuthError

    symbols = [r["ticker"] for r in universe(TICKERS, 42)]
    with SimulatorProcess(tickers=TICKERS, api_key="the-right-key") as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key="a-wrong-key", max_attempts=5)
        tasks = fanout.plan_tasks("per_ticker", DAYS, symbols)
        with pytest.raises(PolygonAuthError, match="401") as error:
            fanout.fetch_bars(spark, settings, tasks, concurrency=2, partitions=2)
    assert sum(error.value.calls.values()) <= 2 * 2  # the requests already in flight, no new ones
    assert not error.value.retries
    assert "a-wrong-key" not in str(error.value) and "POLYGON_API_KEY" in str(error.value)


def test_the_rate_cap_is_split_over_the_partitions_that_run_at_once(spark):
    from lib.ingestion.ratelimit import Pacer, per_partition_rate

    slots = spark.sparkContext.defaultParallelism
    assert fanout.fetch_partitions(spark, 11_000) == (slots, slots)  # one wave for a short fan-out
    assert fanout.fetch_partitions(spark, 3) == (min(3, slots), min(3, slots))
    assert fanout.fetch_partitions(spark, 2_772_000)[0] == 2_772_000 // fanout.PARTITION_CALLS + 1
    assert fanout.fetch_partitions(spark, 2_772_000, max_calls_per_minute=5) == (slots, slots)  # all at once
    # Bars bound a partition too, in whole waves: 20 years of the whole market by grouped day (5,030 calls of
    # 11,000 bars) needs 28 partitions (2 at a time here) of at most PARTITION_ROWS bars; a year needs no more.
    twenty_years = fanout.plan_tasks("grouped", trading_days(dt.date(2006, 1, 3), dt.date(2025, 12, 31)), ["AAPL"])
    rows = fanout.expected_rows(twenty_years, tickers=11_000)
    assert rows == 11_000 * len(twenty_years) > 55_000_000
    partitions, at_once = fanout.fetch_partitions(spark, len(twenty_years), rows=rows)
    assert partitions % slots == 0 and rows / partitions <= fanout.PARTITION_ROWS < rows / (partitions - slots)
    assert at_once == slots
    tickers = [f"T{i}" for i in range(11_000)]
    year = fanout.plan_tasks("range", trading_days(dt.date(2025, 1, 2), dt.date(2025, 12, 31)), tickers)
    assert fanout.expected_rows(year) == 11_000 * 250
    assert fanout.fetch_partitions(spark, len(year), rows=fanout.expected_rows(year)) == (slots, slots)
    assert per_partition_rate(6000, 2) == 3000 and per_partition_rate(0, 2) == 0
    pacer = Pacer(per_minute=600)  # a slot every 0.1 s, booked without sleeping
    slots_booked = [pacer.reserve() for _ in range(4)]
    assert [round(b - a, 2) for a, b in zip(slots_booked, slots_booked[1:], strict=False)] == [0.1, 0.1, 0.1]
    assert Pacer(per_minute=0).reserve() == 0.0
    assert 1.9 < Pacer(per_minute=5, start_in=2.0).reserve() <= 2.0  # a staggered partition's first slot
