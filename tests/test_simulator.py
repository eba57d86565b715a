"""The Polygon simulator, exercised through the official polygon-api-client and raw HTTP against a real server process."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests

from lib.core.trading_days import today_new_york, trading_days
from lib.simulator import SimulatorError, SimulatorProcess, bar, bars_for_day, corporate_actions, listing_dates, universe
from lib.simulator.data import RANGE_KEYS, Market, columns_to_bars
from lib.simulator.encode import bars_json, range_bars_json, ticker_prefixes
from lib.simulator.faults import Defects

polygon = pytest.importorskip("polygon")

TICKERS = 30
SEED = 7
KEY = "test-key-123"
SESSION = dt.date(2024, 3, 28)  # a Thursday session
HOLIDAY = dt.date(2024, 3, 29)  # Good Friday: NYSE closed
WEEKEND = dt.date(2024, 3, 30)


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as process:
        yield process


@pytest.fixture(scope="module")
def client(sim):
    return polygon.RESTClient(api_key=KEY, base=sim.base_url, retries=0)


@pytest.fixture(scope="module")
def late_ticker():
    """A ticker that lists after 2000-01-03 (the 30-ticker universe has a few)."""
    dates = listing_dates(TICKERS, SEED)
    late = {t: d for t, d in dates.items() if d > dt.date(2000, 1, 3)}
    assert late, f"expected some tickers to list after 2000-01-03, got list dates {sorted(set(dates.values()))[-3:]}"
    return min(late.items(), key=lambda item: item[1])


def get(sim, path, key=KEY, **params):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(sim.base_url + path, params=params, headers=headers, timeout=10)


# -- reference tickers ------------------------------------------------------------------------------


def test_list_tickers_pages_through_the_whole_universe(client):
    tickers = list(client.list_tickers(market="stocks", limit=7))
    symbols = [t.ticker for t in tickers]
    assert len(symbols) == TICKERS
    assert len(set(symbols)) == TICKERS
    assert symbols == sorted(symbols)
    assert symbols == [r["ticker"] for r in universe(TICKERS, SEED)]
    first = tickers[0]
    assert first.market == "stocks" and first.locale == "us" and first.active is True
    assert first.primary_exchange in {"XNYS", "XNAS", "XASE", "ARCX", "BATS"}


def test_ticker_page_has_next_url_with_cursor_but_no_key(sim):
    page = get(sim, "/v3/reference/tickers", limit=7).json()
    assert page["status"] == "OK" and page["count"] == 7 and len(page["request_id"]) == 32
    assert page["next_url"].startswith(sim.base_url + "/v3/reference/tickers?cursor=")
    assert KEY not in page["next_url"] and "apiKey" not in page["next_url"]
    last = get(sim, "/v3/reference/tickers", limit=1000).json()
    assert last["count"] == TICKERS and "next_url" not in last


def test_limit_above_1000_is_clamped(sim):
    assert get(sim, "/v3/reference/tickers", limit=5000).status_code == 200


def test_tickers_as_of_a_date_leave_out_later_listings(sim, late_ticker):
    symbol, listed = late_ticker
    def as_of(day):
        return {r["ticker"] for r in get(sim, "/v3/reference/tickers", limit=1000, date=day.isoformat()).json()["results"]}

    before, on = as_of(listed - dt.timedelta(days=1)), as_of(listed)
    assert symbol not in before
    assert symbol in on


# -- grouped daily ------------------------------------------------------------------------------------


def test_grouped_daily_returns_every_listed_ticker(client):
    aggs = client.get_grouped_daily_aggs(SESSION.isoformat())
    listed = [t for t, d in listing_dates(TICKERS, SEED).items() if d <= SESSION]
    assert sorted(a.ticker for a in aggs) == sorted(listed)
    first = aggs[0]
    assert isinstance(first.volume, float) and isinstance(first.transactions, int)
    assert first.timestamp == 1711656000000  # 2024-03-28 16:00 America/New_York


@pytest.mark.parametrize("day", [WEEKEND, HOLIDAY, dt.date(2001, 9, 11), dt.date(2099, 1, 2)])
def test_grouped_daily_is_empty_without_a_session(sim, client, day):
    assert client.get_grouped_daily_aggs(day.isoformat()) == []
    body = get(sim, f"/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}").json()
    assert body["queryCount"] == 0 and body["resultsCount"] == 0 and "results" not in body


def test_grouped_bad_date_is_a_400_with_a_message(sim):
    response = get(sim, "/v2/aggs/grouped/locale/us/market/stocks/2024-13-01")
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR" and "YYYY-MM-DD" in response.json()["error"]


# -- range ----------------------------------------------------------------------------------------------


def test_range_over_a_year_pages_without_gaps_or_repeats(sim, client):
    ticker = universe(TICKERS, SEED)[3]["ticker"]
    start, end = dt.date(2023, 1, 1), dt.date(2023, 12, 31)
    aggs = list(client.list_aggs(ticker, 1, "day", start.isoformat(), end.isoformat(), limit=40))
    days = trading_days(start, end)
    assert len(aggs) == len(days) == 250
    stamps = [a.timestamp for a in aggs]
    assert stamps == sorted(set(stamps))
    first_page = get(sim, f"/v2/aggs/ticker/{ticker}/range/1/day/{start}/{end}", limit=40).json()
    assert first_page["resultsCount"] == 40 and "cursor=" in first_page["next_url"]
    assert KEY not in first_page["next_url"]


def test_range_desc_pages_the_same_bars_in_reverse(client):
    ticker = universe(TICKERS, SEED)[5]["ticker"]
    asc = [a.timestamp for a in client.list_aggs(ticker, 1, "day", "2024-01-01", "2024-06-30", limit=50)]
    desc = [a.timestamp for a in client.list_aggs(ticker, 1, "day", "2024-01-01", "2024-06-30", sort="desc", limit=50)]
    assert desc == asc[::-1] and len(asc) == len(trading_days(dt.date(2024, 1, 1), dt.date(2024, 6, 30)))


def test_range_accepts_epoch_milliseconds(client):
    ticker = universe(TICKERS, SEED)[0]["ticker"]
    by_date = client.get_aggs(ticker, 1, "day", "2024-03-25", "2024-03-28")
    by_ms = client.get_aggs(ticker, 1, "day", 1711339200000, 1711598400000)  # 2024-03-25 and 2024-03-28 00:00 New York
    assert [a.timestamp for a in by_ms] == [a.timestamp for a in by_date]
    assert len(by_date) == 4


def test_range_unknown_ticker_is_empty_and_other_timespans_are_400(sim):
    body = get(sim, "/v2/aggs/ticker/NOSUCH/range/1/day/2024-01-01/2024-02-01").json()
    assert body["status"] == "OK" and body["resultsCount"] == 0 and "results" not in body
    response = get(sim, "/v2/aggs/ticker/NOSUCH/range/5/minute/2024-01-01/2024-02-01")
    assert response.status_code == 400 and "day" in response.json()["error"]


def test_every_session_through_today_and_nothing_after(sim):
    dates = listing_dates(TICKERS, SEED)
    ticker = next(t for t, d in sorted(dates.items()) if d < dt.date(2000, 1, 3))
    body = get(sim, f"/v2/aggs/ticker/{ticker}/range/1/day/2000-01-01/2099-12-31", limit=50000).json()
    expected = trading_days(dt.date(2000, 1, 3), today_new_york())
    assert body["resultsCount"] == len(expected)
    assert body["results"][-1]["t"] == bar(ticker, expected[-1], TICKERS, SEED)["t"]


def test_late_listing_starts_at_its_list_date(client, late_ticker):
    symbol, listed = late_ticker
    aggs = client.get_aggs(symbol, 1, "day", "2000-01-01", listed.isoformat())
    assert len(aggs) == 1  # nothing before the listing, the list day itself is the first bar
    assert aggs[0].timestamp == bar(symbol, listed, TICKERS, SEED)["t"]
    assert bar(symbol, listed - dt.timedelta(days=1), TICKERS, SEED) is None


# -- open-close --------------------------------------------------------------------------------------


def test_open_close_matches_grouped_and_range(client):
    grouped = {a.ticker: a for a in client.get_grouped_daily_aggs(SESSION.isoformat())}
    for ticker in list(grouped)[:8]:
        day = client.get_daily_open_close_agg(ticker, SESSION.isoformat())
        (ranged,) = client.get_aggs(ticker, 1, "day", SESSION.isoformat(), SESSION.isoformat())
        g = grouped[ticker]
        assert day.status == "OK" and day.symbol == ticker and day.from_ == SESSION.isoformat()
        assert (day.open, day.high, day.low, day.close, day.volume) == (g.open, g.high, g.low, g.close, g.volume)
        assert (ranged.open, ranged.high, ranged.low, ranged.close, ranged.volume) == (g.open, g.high, g.low, g.close, g.volume)
        assert (ranged.vwap, ranged.transactions) == (g.vwap, g.transactions)
        assert ranged.timestamp == 1711598400000  # 00:00 New York


def test_pure_functions_serve_the_same_numbers(client):
    served = {a.ticker: a for a in client.get_grouped_daily_aggs(SESSION.isoformat())}
    computed = bars_for_day(SESSION, TICKERS, SEED)
    assert [b["T"] for b in computed] == sorted(served)
    for b in computed:
        a = served[b["T"]]
        assert (b["o"], b["h"], b["l"], b["c"], b["v"], b["vw"], b["n"]) == (
            a.open, a.high, a.low, a.close, a.volume, a.vwap, a.transactions
        )
        one = bar(b["T"], SESSION, TICKERS, SEED)
        assert (one["o"], one["c"], one["vw"], one["n"]) == (b["o"], b["c"], b["vw"], b["n"])


def test_open_close_without_a_bar_is_404_not_found(sim, client):
    ticker = universe(TICKERS, SEED)[0]["ticker"]
    for path in (f"/v1/open-close/{ticker}/{HOLIDAY}", f"/v1/open-close/{ticker}/{WEEKEND}",
                 f"/v1/open-close/NOSUCH/{SESSION}", f"/v1/open-close/{ticker}/2099-01-02"):
        response = get(sim, path)
        assert response.status_code == 404, path
        assert response.json()["status"] == "NOT_FOUND" and response.json()["message"] == "Data not found."
    with pytest.raises(polygon.exceptions.BadResponse):
        client.get_daily_open_close_agg(ticker, HOLIDAY.isoformat())


# -- auth and errors --------------------------------------------------------------------------------------


def test_missing_key_is_401(sim):
    response = get(sim, f"/v1/open-close/AAPL/{SESSION}", key=None)
    assert response.status_code == 401
    body = response.json()
    assert body == {"status": "ERROR", "request_id": body["request_id"], "error": "API Key was not provided"}


def test_wrong_key_is_401_and_query_key_works(sim):
    ticker = universe(TICKERS, SEED)[0]["ticker"]
    wrong = get(sim, f"/v1/open-close/{ticker}/{SESSION}", key="not-the-key")
    assert wrong.status_code == 401 and wrong.json()["error"] == "Unknown API Key"
    assert get(sim, f"/v1/open-close/{ticker}/{SESSION}", key=None, apiKey=KEY).status_code == 200
    assert get(sim, f"/v1/open-close/{ticker}/{SESSION}", key=None, apiKey="nope").status_code == 401


@pytest.mark.parametrize("names", [("MASSIVE_API_KEY",), ("POLYGON_API_KEY",), ("MASSIVE_API_KEY", "POLYGON_API_KEY")])
def test_cli_accepts_only_the_key_of_either_variable(monkeypatch, names):
    from lib.simulator.__main__ import parse_args

    for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert parse_args([]).api_key is None  # neither set: any non-empty key
    for name in names:
        monkeypatch.setenv(name, KEY)
    assert parse_args([]).api_key == KEY


def test_cli_refuses_two_different_keys_without_showing_them(monkeypatch, capsys):
    from lib.simulator.__main__ import parse_args

    monkeypatch.setenv("MASSIVE_API_KEY", "massive-key-one")
    monkeypatch.setenv("POLYGON_API_KEY", "polygon-key-two")
    with pytest.raises(SystemExit) as refused:
        parse_args([])
    error = capsys.readouterr().err
    assert refused.value.code == 2 and "Unset POLYGON_API_KEY to use MASSIVE_API_KEY" in error
    assert "massive-key-one" not in error and "polygon-key-two" not in error


def test_process_gives_the_child_only_its_own_key(monkeypatch):
    """The parent's variables, even two conflicting ones, never reach the child: api_key alone decides."""
    monkeypatch.setenv("MASSIVE_API_KEY", "massive-key-one")
    monkeypatch.setenv("POLYGON_API_KEY", "polygon-key-two")
    with SimulatorProcess(tickers=2, seed=SEED) as any_key:
        assert get(any_key, "/v3/reference/tickers", key="whatever-key").status_code == 200


def test_unknown_path_is_json_404(sim):
    response = get(sim, "/v9/nothing/here")
    assert response.status_code == 404 and response.json()["status"] == "NOT_FOUND"


# -- the data --------------------------------------------------------------------------------------


def test_bars_are_plausible_over_a_sample(sim):
    for record in universe(TICKERS, SEED)[:10]:
        bars = get(sim, f"/v2/aggs/ticker/{record['ticker']}/range/1/day/2000-01-01/2024-12-31", limit=50000).json()["results"]
        assert len(bars) > 100
        for b in bars:
            assert 0 < b["l"] <= min(b["o"], b["c"]) <= max(b["o"], b["c"]) <= b["h"], b
            assert b["l"] <= b["vw"] <= b["h"], b
            assert b["v"] > 0 and b["v"] == int(b["v"]) and isinstance(b["n"], int) and b["n"] > 0, b
            assert all(round(b[k], 4) == b[k] for k in ("o", "h", "l", "c", "vw")), b
        closes = [b["c"] for b in bars]
        daily = [abs(closes[i + 1] / closes[i] - 1) for i in range(len(closes) - 1)]
        assert max(daily) < 0.5  # no absurd jumps
        assert sorted(daily)[len(daily) // 2] < 0.04  # median daily move of a 15-60 %/yr stock


def test_fast_json_encoder_matches_json_dumps():
    market = Market(TICKERS, SEED)
    for tid in range(TICKERS):
        columns = market.ticker_columns(tid, 0, 7000)
        expected = json.dumps(columns_to_bars(columns), separators=(",", ":")).encode()
        assert range_bars_json(*(columns[k] for k in RANGE_KEYS)) == expected
    day = market.day_columns(market.calendar.index_of(SESSION))
    prefixes = ticker_prefixes(list(market.universe.symbols))[:, day["ids"]]
    expected = json.dumps(market.day_bars(market.calendar.index_of(SESSION)), separators=(",", ":")).encode()
    assert bars_json(*(day[k] for k in RANGE_KEYS), prefixes=prefixes) == expected


def test_same_seed_same_data_in_another_process(sim):
    ticker = universe(TICKERS, SEED)[2]["ticker"]
    path = f"/v2/aggs/ticker/{ticker}/range/1/day/2010-01-01/2010-06-30"
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as other:
        ours = get(sim, path).json()
        theirs = requests.get(other.base_url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
        grouped_path = f"/v2/aggs/grouped/locale/us/market/stocks/{SESSION}"
        assert get(sim, grouped_path).json()["results"] == requests.get(
            other.base_url + grouped_path, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        ).json()["results"]
    assert ours["results"] == theirs["results"]
    assert ours["request_id"] != theirs["request_id"]


def test_another_seed_gives_other_prices():
    assert bars_for_day(SESSION, TICKERS, SEED)[0]["c"] != bars_for_day(SESSION, TICKERS, SEED + 1)[0]["c"]


def test_a_process_that_cannot_start_raises_with_its_stderr():
    with pytest.raises(SimulatorError, match="tickers"):
        SimulatorProcess(tickers=0).start()


# -- fault injection -------------------------------------------------------------------------------


def test_spike_defects_raise_the_close_or_the_volume():
    bars = [{"T": "AAA", "o": 10.0, "h": 10.5, "l": 9.5, "c": 10.2, "v": 1000.0}, {"T": "BBB", "o": 5.0, "h": 5.1, "l": 4.9,
            "c": 5.0, "v": 300.0}]  # fmt: skip
    spiked = Defects.parse("price_spike:AAA:2024-03-28,volume_spike:BBB:2024-03-28").apply_grouped(bars, "2024-03-28")
    assert spiked[0] == {"T": "AAA", "o": 10.0, "h": 13.26, "l": 9.5, "c": 13.26, "v": 1000.0}  # close x 1.3, high follows
    assert spiked[1] == {"T": "BBB", "o": 5.0, "h": 5.1, "l": 4.9, "c": 5.0, "v": 6000.0}  # volume x 20
    assert Defects.parse("price_spike:AAA:2024-03-27").apply_grouped(bars, "2024-03-28") == bars


def test_faults_and_defects_are_served_when_asked():
    ticker, other = (r["ticker"] for r in universe(TICKERS, SEED)[:2])
    defects = f"dup:{ticker}:{SESSION},null_close:{other}:{SESSION},high_low:{ticker}:2024-03-27"
    headers = {"Authorization": f"Bearer {KEY}"}
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, fault_rate=1.0, faults="429",
                          fail_tickers=[other], defects=defects, retry_after=3) as faulty:
        limited = requests.get(f"{faulty.base_url}/v3/reference/tickers", headers=headers, timeout=10)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
        failing = requests.get(f"{faulty.base_url}/v1/open-close/{other}/{SESSION}", headers=headers, timeout=10)
        assert failing.status_code == 500
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, defects=defects) as defective:
        grouped = requests.get(f"{defective.base_url}/v2/aggs/grouped/locale/us/market/stocks/{SESSION}",
                               headers=headers, timeout=10).json()
        rows = [b for b in grouped["results"] if b["T"] == ticker]
        assert len(rows) == 2 and rows[0] == rows[1]
        assert next(b for b in grouped["results"] if b["T"] == other)["c"] is None
        swapped = requests.get(f"{defective.base_url}/v1/open-close/{ticker}/2024-03-27", headers=headers, timeout=10).json()
        assert swapped["high"] < swapped["low"]


def test_a_halt_leaves_no_bar_and_a_late_split_is_published_after_its_ex_date():
    """halt:T:FROM..TO serves no bar of T on those sessions (grouped, range, open-close) and the rest unchanged;
    --late-actions T:DAY lists T's actions with an earlier ex-date only from DAY on (a vendor publishing late)."""
    ticker, other = (r["ticker"] for r in universe(TICKERS, SEED)[:2])
    halt = trading_days(dt.date(2024, 3, 4), dt.date(2024, 3, 22))
    split = next(a for a in corporate_actions(TICKERS, SEED)
                 if a["action_type"] == "split" and dt.date(2010, 1, 1) < dt.date.fromisoformat(str(a["ex_date"])))
    ex_date = dt.date.fromisoformat(str(split["ex_date"]))
    published = ex_date + dt.timedelta(days=6)
    options = {"defects": f"halt:{ticker}:{halt[0]}..{halt[-1]}", "late_actions": f"{split['ticker']}:{published}"}

    def split_ids(as_of: dt.date) -> set[str]:
        with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, as_of=as_of, **options) as vendor:
            listed = get(vendor, "/stocks/v1/splits", ticker=split["ticker"], limit=100).json()["results"]
        return {s["id"] for s in listed}

    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, **options) as halted:
        client = polygon.RESTClient(api_key=KEY, base=halted.base_url, retries=0)
        for day in (halt[0], halt[-1]):
            grouped = {b.ticker: b.close for b in client.get_grouped_daily_aggs(day.isoformat())}
            assert ticker not in grouped and grouped[other] == bar(other, day, TICKERS, SEED)["c"]
            assert get(halted, f"/v1/open-close/{ticker}/{day}").status_code == 404
        days = [dt.datetime.fromtimestamp(a.timestamp / 1000, dt.UTC).date()  # midnight in New York: the same day
                for a in client.list_aggs(ticker, 1, "day", "2024-02-26", "2024-03-29")]  # fmt: skip
        assert days == [d for d in trading_days(dt.date(2024, 2, 26), dt.date(2024, 3, 29)) if d not in halt]
    assert split["id"] not in split_ids(published - dt.timedelta(days=1))  # after its ex-date, not yet published
    assert split["id"] in split_ids(published)
