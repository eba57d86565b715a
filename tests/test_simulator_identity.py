"""Tickers are not identities (#27): the simulator's renames, reused tickers and delistings, through the official
`massive` client, in Massive's shapes (ticker events, ticker details, point-in-time tickers) and in the bars.

The expected values are the universe of 50 tickers, seed 42, written out by hand: the simulator's pure functions are
checked against them once, and the endpoints against them everywhere else.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from lib.core.trading_days import trading_days
from lib.simulator import IDENTITY_CAST_FROM, SimulatorProcess, delisting_dates, securities, ticker_changes, universe

massive = pytest.importorskip("massive")

KEY = "identity-key-5d0b"
TICKERS, SEED = 50, 42
# A rename in 2024 and one inside the default run (params/local.yaml: 2026-10-01..2026-10-30); same FIGI and CIK.
RENAMED_2024 = {"old": "DXSB", "new": "CWHG", "date": dt.date(2024, 6, 6), "figi": "BBGWWN3Q8CB1", "cik": "0001689193",
                "old_name": "Sterling Health Inc", "new_name": "Vertex Corp", "list_date": dt.date(1975, 8, 26)}  # fmt: skip
RENAMED_DEFAULT = {"old": "ROGX", "new": "EQNQ", "date": dt.date(2026, 10, 16), "figi": "BBG6JM4ZNPN9"}
# A ticker freed by a delisting and listed again by another company (another FIGI and CIK).
REUSED_2024 = {"ticker": "VIHY", "delisted": dt.date(2024, 4, 24), "relisted": dt.date(2024, 8, 20),
               "old_figi": "BBGN66NH82G8", "new_figi": "BBGFLT4HTJP6", "new_name": "Garnet Pharmaceuticals Inc"}  # fmt: skip
REUSED_DEFAULT = {"ticker": "EFAN", "delisted": dt.date(2021, 7, 1), "relisted": dt.date(2026, 10, 5),
                  "old_figi": "BBGD7PH9ZF00", "new_figi": "BBGLQR74KVD7"}  # fmt: skip
DELISTED_DEFAULT = {"ticker": "WGYZ", "delisted": dt.date(2026, 10, 6)}


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as process:
        yield process


@pytest.fixture(scope="module")
def client(sim):
    return massive.RESTClient(api_key=KEY, base=sim.base_url, retries=0)


def get(sim, path, **params):
    return requests.get(sim.base_url + path, params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)


def sessions_around(day: dt.date, before: int, after: int) -> list[dt.date]:
    days = trading_days(day - dt.timedelta(days=3 * before + 7), day + dt.timedelta(days=3 * after + 7))
    at = days.index(day)
    return days[at - before : at + after]


# -- the universe: the pure functions as the truth ----------------------------------------------------------------------


def test_the_cast_is_in_2024_and_in_the_default_run_and_the_same_in_larger_universes():
    assert ticker_changes(TICKERS, SEED) == [
        {"security": 1_000_000, "composite_figi": RENAMED_2024["figi"], "date": RENAMED_2024["date"],
         "old_ticker": "DXSB", "new_ticker": "CWHG"},
        {"security": 1_000_003, "composite_figi": RENAMED_DEFAULT["figi"], "date": RENAMED_DEFAULT["date"],
         "old_ticker": "ROGX", "new_ticker": "EQNQ"},
    ]  # fmt: skip
    periods = securities(TICKERS, SEED)
    reused = [(p["ticker"], p["valid_from"], p["valid_to"], p["composite_figi"]) for p in periods
              if p["ticker"] in ("VIHY", "EFAN")]  # fmt: skip
    assert reused == [
        ("EFAN", dt.date(1975, 7, 20), REUSED_DEFAULT["delisted"], REUSED_DEFAULT["old_figi"]),
        ("EFAN", REUSED_DEFAULT["relisted"], None, REUSED_DEFAULT["new_figi"]),
        ("VIHY", dt.date(1991, 5, 2), REUSED_2024["delisted"], REUSED_2024["old_figi"]),
        ("VIHY", REUSED_2024["relisted"], None, REUSED_2024["new_figi"]),
    ]
    renamed = [p for p in periods if p["composite_figi"] == RENAMED_2024["figi"]]
    assert [(p["ticker"], p["valid_from"], p["valid_to"], p["name"], p["cik"]) for p in renamed] == [
        ("CWHG", RENAMED_2024["date"], None, RENAMED_2024["new_name"], RENAMED_2024["cik"]),
        ("DXSB", RENAMED_2024["list_date"], RENAMED_2024["date"], RENAMED_2024["old_name"], RENAMED_2024["cik"]),
    ]
    assert delisting_dates(TICKERS, SEED)["WGYZ"] == DELISTED_DEFAULT["delisted"]
    # Before the default run's events, they are unknown.
    assert [c["old_ticker"] for c in ticker_changes(TICKERS, SEED, as_of=dt.date(2026, 10, 15))] == ["DXSB"]
    # The cast is the same in the default run's 300 tickers, and absent below IDENTITY_CAST_FROM.
    cast = [p for p in periods if p["security"] >= 1_000_000]
    assert [p for p in securities(300, SEED) if p["security"] >= 1_000_000] == cast and len(cast) == 9
    assert len(universe(IDENTITY_CAST_FROM - 1, SEED)) == IDENTITY_CAST_FROM - 1


# -- /vX/reference/tickers/{id}/events ---------------------------------------------------------------------------------


def test_events_of_a_renamed_security_by_old_ticker_new_ticker_and_figi(client):
    expected = [{"ticker_change": {"ticker": "CWHG"}, "type": "ticker_change", "date": "2024-06-06"},
                {"ticker_change": {"ticker": "DXSB"}, "type": "ticker_change", "date": "1975-08-26"}]  # fmt: skip
    for identifier in ("CWHG", "DXSB", RENAMED_2024["figi"]):
        events = client.get_ticker_events(identifier, types="ticker_change")
        assert isinstance(events, massive.rest.models.TickerChangeResults), identifier
        assert (events.name, events.composite_figi, events.cik) == ("Vertex Corp", RENAMED_2024["figi"], RENAMED_2024["cik"])
        assert events.events == expected, identifier  # newest first


def test_events_of_a_reused_ticker_are_its_current_holders_and_the_old_company_is_found_by_figi(client):
    current = client.get_ticker_events("VIHY")
    assert (current.composite_figi, current.name) == (REUSED_2024["new_figi"], REUSED_2024["new_name"])
    assert current.events == [{"ticker_change": {"ticker": "VIHY"}, "type": "ticker_change", "date": "2024-08-20"}]
    old = client.get_ticker_events(REUSED_2024["old_figi"])
    assert old.events == [{"ticker_change": {"ticker": "VIHY"}, "type": "ticker_change", "date": "1991-05-02"}]


def test_events_know_only_the_past_and_answer_unknown_ids_and_types_as_errors(sim):
    body = get(sim, f"/vX/reference/tickers/{RENAMED_DEFAULT['figi']}/events").json()
    assert set(body) == {"results", "status", "request_id"} and body["status"] == "OK"
    assert [e["date"] for e in body["results"]["events"]] == ["2026-10-16", "1983-01-25"]
    missing = get(sim, "/vX/reference/tickers/NOSUCH/events")
    assert missing.status_code == 404 and missing.json()["status"] == "NOT_FOUND"
    wrong = get(sim, "/vX/reference/tickers/EQNQ/events", types="ticker_change,split")
    assert wrong.status_code == 400 and "split" in wrong.json()["error"]
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, as_of="2026-10-15") as earlier:
        before = requests.get(f"{earlier.base_url}/vX/reference/tickers/ROGX/events",
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()  # fmt: skip
        unknown = requests.get(f"{earlier.base_url}/vX/reference/tickers/EQNQ/events",
                               headers={"Authorization": f"Bearer {KEY}"}, timeout=10)  # fmt: skip
    assert before["results"]["events"] == [{"ticker_change": {"ticker": "ROGX"}, "type": "ticker_change",
                                            "date": "1983-01-25"}]  # fmt: skip
    assert before["results"]["name"] != "Titan Industries Inc" and unknown.status_code == 404


# -- /v3/reference/tickers with date -----------------------------------------------------------------------------------


def _listed(client, day: dt.date, active: bool = True) -> dict[str, object]:
    return {t.ticker: t for t in client.list_tickers(market="stocks", date=day.isoformat(), active=active, limit=1000)}


def test_point_in_time_tickers_on_both_sides_of_a_rename(client):
    eve, day = sessions_around(RENAMED_2024["date"], 1, 1)
    before, on = _listed(client, eve), _listed(client, day)
    assert "DXSB" in before and "CWHG" not in before
    assert "CWHG" in on and "DXSB" not in on
    old, new = before["DXSB"], on["CWHG"]
    assert (old.composite_figi, old.share_class_figi, old.cik) == (new.composite_figi, new.share_class_figi, new.cik)
    assert (old.name, new.name, old.active, new.active) == (RENAMED_2024["old_name"], RENAMED_2024["new_name"], True, True)
    gone = _listed(client, day, active=False)["DXSB"]
    assert gone.active is False and gone.delisted_utc == "2024-06-06T00:00:00Z" and gone.composite_figi == RENAMED_2024["figi"]


def test_point_in_time_tickers_across_a_reuse(client):
    reused = REUSED_2024["ticker"]
    last, delisted = sessions_around(REUSED_2024["delisted"], 1, 1)
    relisted = REUSED_2024["relisted"]
    assert _listed(client, last)[reused].composite_figi == REUSED_2024["old_figi"]
    assert reused not in _listed(client, delisted) and reused not in _listed(client, relisted - dt.timedelta(days=1))
    assert _listed(client, relisted)[reused].composite_figi == REUSED_2024["new_figi"]
    inactive = [t for t in client.list_tickers(ticker=reused, active=False, limit=1000)]
    assert [(t.composite_figi, t.delisted_utc) for t in inactive] == [(REUSED_2024["old_figi"], "2024-04-24T00:00:00Z")]
    (today,) = client.list_tickers(ticker=reused, limit=1000)
    assert today.composite_figi == REUSED_2024["new_figi"] and today.active is True


def test_the_default_runs_month_lists_its_rename_reuse_and_delisting(client):
    start, end = _listed(client, dt.date(2026, 10, 1)), _listed(client, dt.date(2026, 10, 30))
    assert {"ROGX", "WGYZ"} <= set(start) and not {"EQNQ", "EFAN"} & set(start)
    assert {"EQNQ", "EFAN"} <= set(end) and not {"ROGX", "WGYZ"} & set(end)
    assert end["EFAN"].composite_figi == REUSED_DEFAULT["new_figi"]


# -- /v3/reference/tickers/{ticker} ------------------------------------------------------------------------------------


def test_ticker_details_are_the_security_trading_under_the_ticker_on_the_day(sim, client):
    eve = sessions_around(RENAMED_2024["date"], 1, 0)[0]
    old = client.get_ticker_details("DXSB", date=eve.isoformat())
    new = client.get_ticker_details("CWHG")
    assert isinstance(new, massive.rest.models.TickerDetails)
    assert (old.ticker, old.name, old.composite_figi, old.active) == ("DXSB", RENAMED_2024["old_name"],
                                                                      RENAMED_2024["figi"], True)  # fmt: skip
    assert (new.ticker, new.name, new.composite_figi, new.cik) == ("CWHG", RENAMED_2024["new_name"], RENAMED_2024["figi"],
                                                                 RENAMED_2024["cik"])  # fmt: skip
    assert old.list_date == new.list_date == "1975-08-26"  # the security's, as META's is FB's
    before, after = (client.get_ticker_details("VIHY", date=d) for d in ("2024-04-23", "2024-08-20"))
    assert (before.composite_figi, after.composite_figi) == (REUSED_2024["old_figi"], REUSED_2024["new_figi"])
    assert after.list_date == "2024-08-20"
    for ticker, date in (("DXSB", None), ("DXSB", "2024-06-06"), ("VIHY", "2024-05-01"), ("NOSUCH", None)):
        answer = get(sim, f"/v3/reference/tickers/{ticker}", **({"date": date} if date else {}))
        body = answer.json()
        assert answer.status_code == 404 and body == {"status": "NOT_FOUND", "request_id": body["request_id"],
                                                      "message": "Ticker not found."}, (ticker, date)  # fmt: skip
    with pytest.raises(massive.exceptions.BadResponse):
        client.get_ticker_details("DXSB")


# -- bars under the ticker traded that day -----------------------------------------------------------------------------


def test_range_bars_of_a_rename_are_under_the_old_ticker_before_and_the_new_one_from_the_day(client):
    window = sessions_around(RENAMED_2024["date"], 5, 5)
    first, last = window[0].isoformat(), window[-1].isoformat()
    old = client.get_aggs("DXSB", 1, "day", first, last)
    new = client.get_aggs("CWHG", 1, "day", first, last)
    day_of = {d: int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone(dt.timedelta(hours=-4))).timestamp() * 1000)
              for d in window}  # 00:00 New York (summer time)
    assert [a.timestamp for a in old] == [day_of[d] for d in window[:5]]
    assert [a.timestamp for a in new] == [day_of[d] for d in window[5:]]
    # One security: the series runs on across the change (no jump from another company's price).
    assert abs(new[0].open / old[-1].close - 1) < 0.1


def test_grouped_and_open_close_serve_the_ticker_of_the_day(client):
    eve, day = sessions_around(RENAMED_2024["date"], 1, 1)
    on_eve = {a.ticker: a for a in client.get_grouped_daily_aggs(eve.isoformat())}
    on_day = {a.ticker: a for a in client.get_grouped_daily_aggs(day.isoformat())}
    assert "DXSB" in on_eve and "CWHG" not in on_eve and "CWHG" in on_day and "DXSB" not in on_day
    assert client.get_daily_open_close_agg("CWHG", day.isoformat()).close == on_day["CWHG"].close
    with pytest.raises(massive.exceptions.BadResponse):
        client.get_daily_open_close_agg("DXSB", day.isoformat())
    gap = trading_days(REUSED_2024["delisted"], REUSED_2024["relisted"] - dt.timedelta(days=1))
    assert all("VIHY" not in {a.ticker for a in client.get_grouped_daily_aggs(d.isoformat())} for d in gap[:: len(gap) // 3])


def test_a_reused_tickers_bars_are_the_old_companys_before_its_new_listing(client):
    reused = REUSED_2024["ticker"]
    first, last = REUSED_2024["delisted"] - dt.timedelta(days=10), REUSED_2024["relisted"] + dt.timedelta(days=10)
    bars = client.get_aggs(reused, 1, "day", first.isoformat(), last.isoformat())
    days = [dt.datetime.fromtimestamp(a.timestamp / 1000, dt.timezone(dt.timedelta(hours=-4))).date() for a in bars]
    expected = [d for d in trading_days(first, last) if d < REUSED_2024["delisted"] or d >= REUSED_2024["relisted"]]
    assert days == expected
    old_close = next(b.close for b, d in zip(reversed(bars), reversed(days), strict=True) if d < REUSED_2024["delisted"])
    old_details = client.get_ticker_details(reused, date="2024-04-23")
    assert old_details.composite_figi == REUSED_2024["old_figi"]  # the bars before the gap are that company's
    assert client.get_daily_open_close_agg(reused, "2024-04-23").close == old_close
