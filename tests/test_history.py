"""History that stays true (#13): the simulator's splits, dividends and delistings, through the official `massive`
client and through 01_ingest, and daily runs across a split that read back without a jump."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from pyspark.sql import functions as F

from lib.analytics import prices
from lib.core.trading_days import trading_days
from lib.ingestion.rest_client import ClientSettings
from lib.running import steps
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess, corporate_actions, delisting_dates
from lib.storage import catalog

massive = pytest.importorskip("massive")

KEY = "history-key-7f2a"
TICKERS = 40  # ids 3, 11, ... split; 1, 5, ... pay dividends; 31 delists
SEED = 42


def first_split(tickers: int = TICKERS, after: dt.date = dt.date(2010, 1, 1)) -> dict:
    splits = [a for a in corporate_actions(tickers, SEED) if a["action_type"] == "split" and a["ex_date"] > after]
    return min(splits, key=lambda a: a["ex_date"])


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as process:
        yield process


def config_for(warehouse, namespace: str, **params) -> RunConfig:
    return RunConfig.from_params(warehouse=str(warehouse), namespace=namespace, **params)


# -- the simulator through Massive's official client ------------------------------------------------------------------


def test_official_client_pages_splits_of_the_current_endpoint(sim):
    official = massive.RESTClient(api_key=KEY, base=sim.base_url, retries=0)
    served = list(official.list_stocks_splits(limit=3, sort="execution_date.asc"))
    expected = [a for a in corporate_actions(TICKERS, SEED) if a["action_type"] == "split"]
    assert len(served) == len(expected) > 3  # more than one page, every split once
    assert [s.execution_date for s in served] == sorted(a["ex_date"].isoformat() for a in expected)
    by_id = {a["id"]: a for a in expected}
    for split in served:
        action = by_id[split.id]
        assert (split.ticker, split.split_from, split.split_to) == (action["ticker"], action["split_from"], action["split_to"])
        assert split.adjustment_type == ("reverse_split" if split.split_from > split.split_to else "forward_split")
        assert split.historical_adjustment_factor > 0


def test_official_client_filters_dividends_by_ticker_and_ex_date(sim):
    official = massive.RESTClient(api_key=KEY, base=sim.base_url, retries=0)
    dividend = next(a for a in corporate_actions(TICKERS, SEED) if a["action_type"] == "dividend" and a["ex_date"].year == 2020)
    window = (dividend["ex_date"] - dt.timedelta(days=200), dividend["ex_date"])
    served = list(official.list_stocks_dividends(ticker=dividend["ticker"], ex_dividend_date_gte=window[0],
                                                 ex_dividend_date_lte=window[1], limit=1))  # fmt: skip
    expected = [a for a in corporate_actions(TICKERS, SEED) if a["ticker"] == dividend["ticker"]
                and a["action_type"] == "dividend" and window[0] <= a["ex_date"] <= window[1]]  # fmt: skip
    assert 2 <= len(served) == len(expected)  # quarterly: two or three in 200 days, one page each
    assert [d.ex_dividend_date for d in served] == sorted((a["ex_date"].isoformat() for a in expected), reverse=True)
    last = served[0]
    assert (last.id, last.cash_amount, last.currency, last.frequency, last.distribution_type) == (
        dividend["id"], dividend["cash_amount"], "USD", 4, "recurring")
    assert (last.declaration_date, last.record_date, last.pay_date) == tuple(
        dividend[k].isoformat() for k in ("declaration_date", "record_date", "pay_date"))


def test_official_client_reads_the_deprecated_endpoints(sim):
    official = massive.RESTClient(api_key=KEY, base=sim.base_url, retries=0)
    split = first_split()
    (served,) = list(official.list_splits(ticker=split["ticker"], execution_date=split["ex_date"].isoformat()))
    assert (served.id, served.split_from, served.split_to) == (split["id"], split["split_from"], split["split_to"])
    reverse = list(official.list_splits(reverse_split=True, limit=1000))
    assert reverse and all(s.split_from > s.split_to for s in reverse)
    dividends = list(official.list_dividends(ex_dividend_date_gte="2024-01-01", ex_dividend_date_lte="2024-03-31", limit=4))
    assert dividends and all("2024-01-01" <= d.ex_dividend_date <= "2024-03-31" and d.dividend_type == "CD" for d in dividends)


def test_bars_are_as_traded_when_false_and_split_adjusted_as_of_the_request_day(sim):
    split = first_split()
    ticker, ex = split["ticker"], split["ex_date"]
    before = trading_days(ex - dt.timedelta(days=10), ex)[-2]
    path = f"{sim.base_url}/v2/aggs/ticker/{ticker}/range/1/day/{before}/{ex}"
    headers = {"Authorization": f"Bearer {KEY}"}
    traded = requests.get(path, params={"adjusted": "false"}, headers=headers, timeout=10).json()["results"]
    adjusted = requests.get(path, headers=headers, timeout=10).json()["results"]
    # Adjusted as of today: every later split applies to both bars, this one only to the bar before it.
    later = adjusted[1]["c"] / traded[1]["c"]
    ratio = split["split_from"] / split["split_to"]
    assert adjusted[0]["c"] == pytest.approx(traded[0]["c"] * ratio * later, rel=1e-12)
    assert adjusted[0]["v"] == pytest.approx(traded[0]["v"] / (ratio * later), rel=1e-12)
    assert adjusted[1]["v"] == pytest.approx(traded[1]["v"] / later, rel=1e-12)
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, as_of=before.isoformat()) as earlier:
        replay = requests.get(f"{earlier.base_url}/v2/aggs/ticker/{ticker}/range/1/day/{before}/{ex}",
                              headers=headers, timeout=10).json()["results"]  # fmt: skip
    assert replay == traded[:1]  # on the day before, the split is not known to adjusted=true, and ex is the future


# -- ingestion -------------------------------------------------------------------------------------------------------


def test_ingest_stores_as_traded_bars_and_upserts_actions_once(spark, warehouse, sim):
    split = first_split()
    ds = trading_days(split["ex_date"], split["ex_date"] + dt.timedelta(days=5))[1]
    config = config_for(warehouse, "history_actions", ds=str(ds), start_ds=str(ds - dt.timedelta(days=20)),
                        strategy="grouped", simulator_tickers=TICKERS)  # fmt: skip
    settings = ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2)
    report = steps.run_ingest(spark, config, settings)
    assert report.splits_seen >= 1 and report.dividends_seen >= 1 and "corporate actions:" in report.summary()
    stored = catalog.read_table(spark, config, "corporate_actions")
    first = stored.orderBy("source_id").collect()
    assert split["id"] in {r.source_id for r in first}
    row = next(r for r in first if r.source_id == split["id"])
    assert (row.symbol, row.action_type, row.ex_date, row.split_from, row.split_to) == (
        split["ticker"], "split", split["ex_date"], float(split["split_from"]), float(split["split_to"]))
    assert row.first_seen_ds == row.last_seen_ds == ds
    steps.run_ingest(spark, config, settings)  # the same ds again: the same rows, no duplicate
    assert stored.count() == len(first) == stored.select("source_id").distinct().count()

    before = trading_days(split["ex_date"] - dt.timedelta(days=7), split["ex_date"])[-2]
    bars = {r.date: r.close for r in catalog.read_table(spark, config, "stock_prices")
            .filter(F.col("symbol") == split["ticker"]).collect()}  # fmt: skip
    expected = requests.get(
        f"{sim.base_url}/v2/aggs/ticker/{split['ticker']}/range/1/day/{before}/{before}",
        params={"adjusted": "false"}, headers={"Authorization": f"Bearer {KEY}"}, timeout=10,
    ).json()["results"][0]["c"]
    assert bars[before] == expected  # as traded: the pre-split price, not today's basis


def test_a_range_backfill_keeps_a_ticker_that_delists_mid_span(spark, warehouse, sim):
    ((ticker, delisted),) = delisting_dates(TICKERS, SEED).items()
    span = trading_days(delisted - dt.timedelta(days=12), delisted + dt.timedelta(days=10))
    config = config_for(warehouse, "history_delisted", ds=str(span[-1]), start_ds=str(span[0]), strategy="range",
                        simulator_tickers=TICKERS)  # fmt: skip
    steps.run_ingest(spark, config, ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2))
    dates = sorted(r.date for r in catalog.read_table(spark, config, "stock_prices").filter(F.col("symbol") == ticker).collect())
    assert dates == [d for d in span if d < delisted]  # its bars up to the delisting, none after


# -- the headline: daily runs across a split read back without a jump -----------------------------------------------


def test_daily_runs_across_a_split_read_back_as_the_api_adjusts_on_the_last_day(spark, warehouse):
    tickers = 8  # id 3 splits
    split = first_split(tickers)
    ticker, ex = split["ticker"], split["ex_date"]
    days = trading_days(ex - dt.timedelta(days=6), ex + dt.timedelta(days=4))
    namespace = "history_daily"
    for ds in days:
        with SimulatorProcess(tickers=tickers, seed=SEED, api_key=KEY, as_of=ds.isoformat()) as sim:
            config = config_for(warehouse, namespace, ds=str(ds), strategy="grouped", simulator_tickers=tickers)
            steps.run_ingest(spark, config, ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2))
            steps.run_rollup(spark, config, keep_snapshots=None)
            if ds == days[-1]:
                answer = requests.get(f"{sim.base_url}/v2/aggs/ticker/{ticker}/range/1/day/{days[0]}/{days[-1]}",
                                      headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()["results"]  # fmt: skip
    config = config_for(warehouse, namespace, ds=str(days[-1]))
    raw = prices.read(config, [ticker], days[0], days[-1], adjust="raw")
    adjusted = prices.read(config, [ticker], days[0], days[-1], adjust="split")
    assert list(adjusted["date"]) == days
    for column, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("vwap", "vw"), ("volume", "v")):
        assert list(adjusted[column]) == pytest.approx([b[key] for b in answer], rel=1e-9), column

    def largest_move(frame):
        closes = list(frame["close"])
        return max(abs(b / a - 1) for a, b in zip(closes, closes[1:], strict=False))

    before, after = largest_move(raw), largest_move(adjusted)
    print(f"\n{ticker} {split['split_from']}:{split['split_to']} split on {ex}: largest one-day move "
          f"as traded {before:.1%}, split-adjusted {after:.1%}")
    assert before > 0.3 and after < 0.15

    # 04_trends analyses the same series: its Spark read equals lib.prices', and trend_summary shows no false crash.
    for adjust in ("raw", "split"):
        trend_config = config_for(warehouse, namespace, ds=str(days[-1]), start_ds=str(days[0]), symbols=[ticker],
                                  lookback_days=0, adjust=adjust)  # fmt: skip
        report = steps.run_trends(spark, trend_config)
        expected = raw if adjust == "raw" else adjusted
        assert list(report.daily["close"]) == pytest.approx(list(expected["close"]), rel=1e-12), adjust
        (row,) = report.summary_table.itertuples()
        assert row.adjust == adjust and row.bars == len(days)
        assert row.total_return == pytest.approx(expected["close"].iloc[-1] / expected["close"].iloc[0] - 1, rel=1e-12)
        if adjust == "split":
            assert row.max_drawdown > -0.15, row  # no false crash across the split
