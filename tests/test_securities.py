"""One security, many tickers (contract: "One security, many tickers"), the ingestion side: the securities table and
the security_id of every stored bar, against the simulator's own record of who held which ticker when (an independent
truth: lib.simulator.securities), and the rules of the resolution on hand-written records.

The simulator's universes of 50 tickers or more hold a rename (DXSB became CWHG on 2024-06-06), a delisting (VIHY,
2024-04-24) and the reuse of its ticker by another company (VIHY again from 2024-08-20).
"""

from __future__ import annotations

import datetime as dt

import pytest

from lib.core.trading_days import trading_days
from lib.ingestion import securities
from lib.ingestion.rest_client import ClientSettings
from lib.running import steps
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess
from lib.simulator import securities as true_securities
from lib.storage import catalog
from lib.storage.securities import holder, intervals

KEY = "securities-key-7a21"
TICKERS, SEED = 100, 42
RENAME = dt.date(2024, 6, 6)  # DXSB -> CWHG
DELISTED, RELISTED = dt.date(2024, 4, 24), dt.date(2024, 8, 20)  # VIHY: one company, then another
D = dt.date


# ---------------------------------------------------------------------------------------------------------------
# The rules, on hand-written records


def _record(ticker, figi=None, delisted=None, name="Co"):
    record = {"ticker": ticker, "name": name, "active": delisted is None}
    if figi:
        record["composite_figi"] = figi
    if delisted:
        record["delisted_utc"] = f"{delisted}T00:00:00Z"
    return record


def _no_call(*args):
    raise AssertionError(f"no reference call was expected, got one for {args}")


def test_a_backfill_ties_a_renamed_ticker_to_its_successor_by_figi():
    resolution = securities.resolve([], [_record("META", "F1"), _record("AAA", "F2")],
                                    [_record("FB", "F1", D(2022, 6, 9))], D(2022, 6, 30), _no_call, _no_call)  # fmt: skip
    periods = {p["ticker"]: p for p in resolution.periods}
    assert periods["FB"]["security_id"] == periods["META"]["security_id"] == "F1"
    assert (periods["FB"]["valid_to"], periods["META"]["valid_from"]) == (D(2022, 6, 9), D(2022, 6, 9))
    assert periods["META"]["valid_to"] is None and periods["FB"]["delisted_date"] is None
    assert resolution.renames == [("FB", "META", D(2022, 6, 9))] and resolution.delistings == []
    assert intervals(resolution.periods) == [
        ("AAA", None, None, "F2"), ("FB", None, D(2022, 6, 9), "F1"), ("META", D(2022, 6, 9), None, "F1"),
    ]  # fmt: skip


def test_a_daily_run_asks_only_about_the_ticker_that_vanished():
    stored = securities.resolve([], [_record("FB", "F1"), _record("AAA", "F2")], None, D(2022, 6, 8), _no_call,
                                _no_call).periods  # fmt: skip
    asked = []

    def inactive(ticker):
        asked.append(ticker)
        return [_record("FB", "F1", D(2022, 6, 9))]

    resolution = securities.resolve(stored, [_record("META", "F1"), _record("AAA", "F2")], None, D(2022, 6, 9),
                                    inactive, _no_call)  # fmt: skip
    assert asked == ["FB"] and resolution.calls == {"vanished": 1, "details": 0}
    assert resolution.renames == [("FB", "META", D(2022, 6, 9))]
    # The next day nothing is new or gone: no call at all.
    again = securities.resolve(resolution.periods, [_record("META", "F1"), _record("AAA", "F2")], None, D(2022, 6, 10),
                               _no_call, _no_call)  # fmt: skip
    assert again.periods == resolution.periods and again.renames == []


def test_a_reused_ticker_is_two_securities_and_a_delisting_ends_the_first():
    asked = []

    def details(ticker, day):
        asked.append((ticker, day))
        return {"ticker": ticker, "list_date": "2024-08-20"}

    resolution = securities.resolve([], [_record("VIHY", "NEW")], [_record("VIHY", "OLD", D(2024, 4, 24))],
                                    D(2024, 8, 30), _no_call, details)  # fmt: skip
    # The new holder's first day comes from its ticker details: one call, for the reuse alone.
    assert asked == [("VIHY", D(2024, 8, 30))] and resolution.calls == {"vanished": 0, "details": 1}
    old, new = resolution.periods
    assert (old["security_id"], old["valid_to"], old["delisted_date"]) == ("OLD", D(2024, 4, 24), D(2024, 4, 24))
    assert (new["security_id"], new["valid_to"], new["delisted_date"]) == ("NEW", None, None)
    assert resolution.delistings == [("VIHY", D(2024, 4, 24))]
    tiles = intervals(resolution.periods)
    assert tiles == [("VIHY", None, D(2024, 4, 24), "OLD"), ("VIHY", D(2024, 8, 20), None, "NEW")]
    # Reads by ticker: the holder on the last day of the span that anybody held it; before the reuse, the old one.
    assert holder(resolution.periods, "VIHY", D(2024, 4, 1), D(2024, 9, 30)) == "NEW"
    assert holder(resolution.periods, "VIHY", D(2024, 4, 1), D(2024, 6, 30)) == "OLD"
    assert holder(resolution.periods, "NOPE", D(2024, 4, 1), D(2024, 6, 30)) is None
    # The next run of the reused ticker asks nothing more.
    again = securities.resolve(resolution.periods, [_record("VIHY", "NEW")], None, D(2024, 9, 3), _no_call, _no_call)
    assert again.periods == resolution.periods


def test_a_ticker_without_figi_is_named_by_its_listing_once():
    details = []

    def lookup(ticker, day):
        details.append((ticker, day))
        return {"ticker": ticker, "list_date": "2001-02-03"}

    first = securities.resolve([], [_record("NOFG")], None, D(2024, 1, 2), _no_call, lookup)
    assert details == [("NOFG", D(2024, 1, 2))] and first.periods[0]["security_id"] == "NOFG:2001-02-03"
    assert first.periods[0]["valid_from"] == D(2001, 2, 3)
    # Stored: the next run asks nothing, and a backfill that meets it delisted keeps its name.
    later = securities.resolve(first.periods, [], [_record("NOFG", delisted=D(2024, 3, 1))], D(2024, 3, 5),
                               _no_call, _no_call)  # fmt: skip
    assert [(p["security_id"], p["valid_to"]) for p in later.periods] == [("NOFG:2001-02-03", D(2024, 3, 1))]


def test_a_past_days_run_does_not_reopen_what_a_later_run_learned():
    learned = securities.resolve([], [_record("META", "F1")], [_record("FB", "F1", D(2022, 6, 9))], D(2022, 7, 1),
                                 _no_call, _no_call).periods  # fmt: skip
    # On 2022-06-01 FB was still listed and META was not: a re-run of that day sees FB active, and must keep the end.
    rerun = securities.resolve(learned, [_record("FB", "F1")], None, D(2022, 6, 1), lambda ticker: [], _no_call)
    assert rerun.periods == learned


# ---------------------------------------------------------------------------------------------------------------
# The pipeline against the simulator's truth


def _config(warehouse, namespace: str, start: dt.date, ds: dt.date) -> RunConfig:
    return RunConfig.from_params(warehouse=str(warehouse), namespace=namespace, ds=str(ds), start_ds=str(start),
                                 strategy="grouped", simulator_tickers=TICKERS, wap_branch="")  # fmt: skip


def _expected_id(period: dict) -> str:
    return period["composite_figi"] or f"{period['ticker']}:{period['list_date']}"


def _truth_of(ticker: str, day: dt.date) -> dict:
    for period in true_securities(TICKERS, SEED):
        held = period["valid_from"] <= day and (period["valid_to"] is None or day < period["valid_to"])
        if period["ticker"] == ticker and held:
            return period
    raise AssertionError(f"the simulator has nobody holding {ticker} on {day}")


@pytest.fixture(scope="module")
def runs(spark, warehouse):
    """Warehouse `ids_range`: a backfill across the delisting and the rename, then a range across the reuse.
    Warehouse `ids_daily`: a short range before the rename, then one run a day over it."""
    reports = {}
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2)
        reports["backfill"] = steps.run_ingest(spark, _config(warehouse, "ids_range", D(2024, 4, 22), D(2024, 6, 10)), settings)
        reports["reuse"] = steps.run_ingest(spark, _config(warehouse, "ids_range", D(2024, 8, 15), D(2024, 8, 22)), settings)
        steps.run_ingest(spark, _config(warehouse, "ids_daily", D(2024, 6, 3), D(2024, 6, 5)), settings)
        for day in trading_days(RENAME, D(2024, 6, 10)):
            reports[day] = steps.run_ingest(spark, _config(warehouse, "ids_daily", day, day), settings)
    return reports


def _table(spark, warehouse, namespace: str, name: str):
    return catalog.read_table(spark, _config(warehouse, namespace, D(2024, 6, 3), D(2024, 6, 3)), name).toPandas()


def test_every_stored_bar_belongs_to_the_security_that_traded_it(spark, warehouse, runs):
    prices = _table(spark, warehouse, "ids_range", "stock_prices")
    expected = [_expected_id(_truth_of(r.symbol, r.date)) for r in prices.itertuples()]
    assert prices["security_id"].tolist() == expected
    dxsb = prices[prices["symbol"].isin(["DXSB", "CWHG"])]
    assert dxsb["security_id"].nunique() == 1 and set(dxsb["symbol"]) == {"DXSB", "CWHG"}
    vihy = prices[prices["symbol"] == "VIHY"]
    assert vihy[vihy["date"] < DELISTED]["security_id"].nunique() == 1
    assert vihy[vihy["date"] >= RELISTED]["security_id"].nunique() == 1
    assert set(vihy[vihy["date"] < DELISTED]["security_id"]).isdisjoint(vihy[vihy["date"] >= RELISTED]["security_id"])


def test_the_securities_table_holds_the_periods_the_simulator_served(spark, warehouse, runs):
    table = _table(spark, warehouse, "ids_range", "securities")
    stored = {(r.ticker, r.security_id): r for r in table.itertuples()}
    for ticker, day in (("DXSB", D(2024, 6, 5)), ("CWHG", RENAME), ("VIHY", D(2024, 4, 23)), ("VIHY", RELISTED)):
        truth = _truth_of(ticker, day)
        row = stored[(ticker, _expected_id(truth))]
        assert (row.valid_to, row.composite_figi, row.name) == (truth["valid_to"], truth["composite_figi"], truth["name"])
        assert row.delisted_date == (truth["delisted_date"] if truth["valid_to"] is not None else None)
    assert stored[("CWHG", _expected_id(_truth_of("CWHG", RENAME)))].valid_from == RENAME
    assert stored[("VIHY", _expected_id(_truth_of("VIHY", RELISTED)))].valid_from == RELISTED
    assert runs["reuse"].reference_calls["details"] == 1  # the reused ticker's new holder, dated
    # The backfill learned the rename and the delisting inside its span, and fetched the delisted company's bars.
    assert ("DXSB", "CWHG", RENAME) in runs["backfill"].renames and ("VIHY", DELISTED) in runs["backfill"].delistings
    prices = _table(spark, warehouse, "ids_range", "stock_prices")
    last_vihy = prices[(prices["symbol"] == "VIHY") & (prices["date"] < DELISTED)]["date"].max()
    assert last_vihy == max(d for d in trading_days(D(2024, 4, 22), DELISTED) if d < DELISTED)


def test_daily_runs_learn_the_rename_on_its_day_with_one_call_and_agree_with_the_backfill(spark, warehouse, runs):
    rename_day = runs[RENAME]
    assert rename_day.renames == [("DXSB", "CWHG", RENAME)]
    assert rename_day.reference_calls == {"vanished": 1, "details": 0}
    assert rename_day.calls["tickers"] == 2  # the day's ticker list (one page) and DXSB's inactive record
    for day in trading_days(RENAME + dt.timedelta(days=1), D(2024, 6, 10)):
        assert runs[day].reference_calls == {"vanished": 0, "details": 0} and runs[day].calls["tickers"] == 1
    daily = _table(spark, warehouse, "ids_daily", "stock_prices").set_index(["symbol", "date"])["security_id"]
    backfill = _table(spark, warehouse, "ids_range", "stock_prices").set_index(["symbol", "date"])["security_id"]
    assert len(daily) and daily.equals(backfill.loc[daily.index])


def test_an_earlier_versions_warehouse_gains_security_ids_on_its_next_run(spark, warehouse):
    """A warehouse whose stock_prices has no security_id and no securities table (as earlier versions left it): its
    next daily run gives every stored bar its security, the ones before the run's span too."""
    earlier = _config(warehouse, "ids_earlier", D(2024, 5, 28), D(2024, 6, 7))
    old = _config(warehouse, "ids_old", D(2024, 5, 28), D(2024, 6, 7))
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2)
        steps.run_ingest(spark, earlier, settings)
        # The bars as an earlier version stored them: stock_prices without the column, month partitions.
        bars = ", ".join(f.name for f in catalog.BAR_SCHEMA.fields)
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog.quote_identifier(old.catalog, old.namespace)}")
        spark.sql(f"CREATE TABLE {catalog.table_identifier(old, 'stock_prices')} USING iceberg PARTITIONED BY "
                  f"(months(date)) AS SELECT {bars} FROM {catalog.table_identifier(earlier, 'stock_prices')}")  # fmt: skip
        day = D(2024, 6, 10)
        report = steps.run_ingest(spark, _config(warehouse, "ids_old", day, day), settings)
    prices = _table(spark, warehouse, "ids_old", "stock_prices")
    assert report.migrated_rows == len(prices[prices["date"] < day]) > 0
    assert prices["security_id"].notna().all()
    assert prices["security_id"].tolist() == [_expected_id(_truth_of(r.symbol, r.date)) for r in prices.itertuples()]
    assert ("DXSB", "CWHG", RENAME) in report.renames
