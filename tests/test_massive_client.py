"""The simulator speaks the API of Massive (formerly Polygon.io) as its official clients expect it.

Each endpoint the workspace uses is called three ways against one simulator process, for the same request: through
Massive's official client `massive` (2.9.1), through the former official client `polygon-api-client` (1.16.3) and
through the workspace's own client (`lib.ingestion.rest_client`). The answers are compared field by field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from lib.ingestion.rest_client import ClientSettings, PolygonClient
from lib.simulator import SimulatorProcess, listing_dates, universe

massive = pytest.importorskip("massive")
polygon = pytest.importorskip("polygon")
from massive.exceptions import BadResponse  # noqa: E402 (after the importorskip above)

REPO = Path(__file__).resolve().parent.parent
TICKERS = 23  # five pages of five
SEED = 11
KEY = "massive-fidelity-key-5d1c"
SESSION = dt.date(2024, 3, 28)
GOOD_FRIDAY = dt.date(2024, 3, 29)
MARCH = (dt.date(2024, 3, 1), dt.date(2024, 3, 28))

# The API's short JSON names and the attribute each client's model gives them (written out, not derived).
TICKER_FIELDS = ("ticker", "name", "market", "locale", "primary_exchange", "type", "active", "currency_name", "cik",
                 "composite_figi", "share_class_figi", "last_updated_utc")  # fmt: skip
AGG_FIELDS = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vw": "vwap", "t": "timestamp",
              "n": "transactions"}  # fmt: skip
OPEN_CLOSE_FIELDS = {"status": "status", "from": "from_", "symbol": "symbol", "open": "open", "high": "high",
                     "low": "low", "close": "close", "volume": "volume", "afterHours": "after_hours",
                     "preMarket": "pre_market"}  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as process:
        yield process


@pytest.fixture
def official(sim):
    """Massive's client, as its README shows it, pointed at the simulator (`base`); no retries, so nothing hides."""
    return massive.RESTClient(api_key=KEY, base=sim.base_url, retries=0)


@pytest.fixture
def former(sim):
    return polygon.RESTClient(api_key=KEY, base=sim.base_url, retries=0)


@pytest.fixture
def ours(sim):
    return PolygonClient(ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=1))


def record_requests(client) -> list[str]:
    """The URLs a massive/polygon client requests from here on: its urllib3 pool's request, wrapped. A GET's
    `fields` become the query string, as urllib3 encodes them."""
    urls: list[str] = []
    request = client.client.request

    def recording(method, url, fields=None, **kwargs):
        urls.append(url + (f"?{urlencode(fields)}" if fields else ""))
        return request(method, url, fields=fields, **kwargs)

    client.client.request = recording
    return urls


def model(record) -> dict:
    return dataclasses.asdict(record)


# -- /v3/reference/tickers ----------------------------------------------------------------------------------------


def test_list_tickers_pages_by_next_url_and_matches_our_client_and_polygons(sim, official, former, ours):
    urls = record_requests(official)
    massive_tickers = list(official.list_tickers(market="stocks", active=True, date=SESSION, limit=5))
    polygon_tickers = list(former.list_tickers(market="stocks", active=True, date=SESSION, limit=5))
    our_records = ours.tickers(as_of=SESSION, limit=5)

    listed = sorted(t for t, listed_on in listing_dates(TICKERS, SEED).items() if listed_on <= SESSION)
    assert [t.ticker for t in massive_tickers] == [r["ticker"] for r in our_records] == listed
    assert len(massive_tickers) > 10, "too few tickers to page"
    assert [model(t) for t in massive_tickers] == [model(t) for t in polygon_tickers]
    for ticker, record in zip(massive_tickers, our_records, strict=True):
        assert {f: getattr(ticker, f) for f in TICKER_FIELDS} == {f: record.get(f) for f in TICKER_FIELDS}  # absent: None
    # Paging: one request per page of five, each later one the previous page's next_url (a cursor) on our base.
    pages = -(-len(massive_tickers) // 5)
    assert len(urls) == pages == ours.calls["tickers"]
    assert all(u.startswith(f"{sim.base_url}/v3/reference/tickers?") for u in urls)
    assert "limit=5" in urls[0] and all("cursor=" in u for u in urls[1:])
    assert not any(KEY in u or "apikey" in u.lower() for u in urls), "the key went into a URL"


# -- /v2/aggs/grouped ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("adjusted", [True, False])
def test_grouped_daily_matches_field_by_field(official, former, ours, adjusted):
    massive_bars = official.get_grouped_daily_aggs(SESSION, adjusted=adjusted)
    polygon_bars = former.get_grouped_daily_aggs(SESSION.isoformat(), adjusted=adjusted)
    our_bars = ours.grouped_daily(SESSION, adjusted=adjusted)
    assert len(massive_bars) == len(our_bars) > 0
    assert [model(b) for b in massive_bars] == [model(b) for b in polygon_bars]
    for bar, record in zip(massive_bars, our_bars, strict=True):
        assert bar.ticker == record["T"]
        assert {name: getattr(bar, name) for name in AGG_FIELDS.values()} == {AGG_FIELDS[k]: record[k] for k in AGG_FIELDS}


def test_grouped_daily_without_a_session_is_empty_for_every_client(official, former, ours):
    assert official.get_grouped_daily_aggs(GOOD_FRIDAY) == former.get_grouped_daily_aggs(GOOD_FRIDAY) == []
    assert ours.grouped_daily(GOOD_FRIDAY) == []


# -- /v2/aggs/ticker/{ticker}/range -------------------------------------------------------------------------------


@pytest.mark.parametrize("adjusted", [True, False])
def test_range_aggs_match_and_list_aggs_pages_to_the_same_bars(official, former, ours, adjusted):
    ticker = universe(TICKERS, SEED)[2]["ticker"]
    start, end = MARCH
    urls = record_requests(official)
    paged = list(official.list_aggs(ticker, 1, "day", start, end, adjusted=adjusted, sort="asc", limit=5))
    whole = official.get_aggs(ticker, 1, "day", start.isoformat(), end.isoformat(), adjusted=adjusted)
    polygon_paged = list(former.list_aggs(ticker, 1, "day", start, end, adjusted=adjusted, sort="asc", limit=5))
    our_bars = ours.aggs_range(ticker, start, end, adjusted=adjusted)

    assert len(our_bars) == 20  # the March 2024 sessions up to the 28th
    assert [model(b) for b in paged] == [model(b) for b in whole] == [model(b) for b in polygon_paged]
    for bar, record in zip(paged, our_bars, strict=True):
        assert {name: getattr(bar, name) for name in AGG_FIELDS.values()} == {AGG_FIELDS[k]: record[k] for k in AGG_FIELDS}
    assert len(urls) == 5 and all("cursor=" in u for u in urls[1:4]), urls  # 4 pages of 5, then get_aggs


# -- /v1/open-close -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("adjusted", [True, False])
def test_daily_open_close_matches_field_by_field(official, former, ours, adjusted):
    ticker = universe(TICKERS, SEED)[0]["ticker"]
    bar = official.get_daily_open_close_agg(ticker, SESSION, adjusted=adjusted)
    assert model(bar) == model(former.get_daily_open_close_agg(ticker, SESSION.isoformat(), adjusted=adjusted))
    record = ours.open_close(ticker, SESSION, adjusted=adjusted)
    assert {attr: getattr(bar, attr) for attr in OPEN_CLOSE_FIELDS.values()} == {
        attr: record[name] for name, attr in OPEN_CLOSE_FIELDS.items()
    }
    assert (bar.status, bar.from_, bar.symbol) == ("OK", "2024-03-28", ticker)


def test_open_close_without_a_bar_is_404_not_found_for_every_client(sim, official, former, ours):
    ticker = universe(TICKERS, SEED)[0]["ticker"]
    with pytest.raises(BadResponse) as massive_error:
        official.get_daily_open_close_agg(ticker, GOOD_FRIDAY)
    with pytest.raises(polygon.exceptions.BadResponse) as polygon_error:
        former.get_daily_open_close_agg(ticker, GOOD_FRIDAY.isoformat())
    bodies = [json.loads(str(e.value)) for e in (massive_error, polygon_error)]
    for body in bodies:
        assert body.pop("request_id")
    assert bodies[0] == bodies[1] == {"status": "NOT_FOUND", "message": "Data not found."}
    # The clients raise on any status but 200 without showing it: the status itself, on the wire.
    answer = requests.get(f"{sim.base_url}/v1/open-close/{ticker}/{GOOD_FRIDAY}", headers=official.headers, timeout=10)
    assert answer.status_code == 404 and answer.json()["status"] == "NOT_FOUND"
    assert ours.open_close(ticker, GOOD_FRIDAY) is None  # the workspace reads that 404 as "no bar that day"


# -- the key ------------------------------------------------------------------------------------------------------


def test_the_key_travels_as_a_bearer_header_and_a_request_without_it_is_401(sim, official):
    ticker = universe(TICKERS, SEED)[0]["ticker"]
    path = f"/v1/open-close/{ticker}/{SESSION}"
    assert official.headers["Authorization"] == f"Bearer {KEY}"
    urls = record_requests(official)
    answer = official.get_daily_open_close_agg(ticker, SESSION, raw=True)
    # The simulator accepts only KEY, from the Authorization header or an apiKey parameter; the URL holds no key,
    # so the header carried it.
    assert answer.status == 200 and urls == [sim.base_url + path]
    without = requests.get(sim.base_url + path, timeout=10)
    assert without.status_code == 401 and without.json()["error"] == "API Key was not provided"
    wrong = massive.RESTClient(api_key="not-the-key", base=sim.base_url, retries=0)
    with pytest.raises(BadResponse) as refused:
        wrong.get_daily_open_close_agg(ticker, SESSION)
    assert json.loads(str(refused.value))["error"] == "Unknown API Key"


def test_massive_client_reads_MASSIVE_API_KEY_like_the_workspace(sim, ours):  # noqa: N802 (the variable's name)
    """A user exports MASSIVE_API_KEY once: Massive's client (no api_key argument) and the workspace both use it."""
    ticker = universe(TICKERS, SEED)[1]["ticker"]
    env = {k: v for k, v in os.environ.items() if k not in ("MASSIVE_API_KEY", "POLYGON_API_KEY")}
    env["MASSIVE_API_KEY"] = KEY
    script = (
        "import sys, massive\n"
        "bar = massive.RESTClient(base=sys.argv[1], retries=0).get_daily_open_close_agg(sys.argv[2], sys.argv[3])\n"
        "print(bar.close, bar.volume)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, sim.base_url, ticker, SESSION.isoformat()], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = ours.open_close(ticker, SESSION)
    assert done.stdout.split() == [str(record["close"]), str(float(record["volume"]))]
    assert KEY not in done.stdout + done.stderr


def test_massive_client_defaults_to_the_base_url_the_workspace_uses_with_a_key():
    from lib.running.runner import MASSIVE_URL

    assert massive.rest.BASE == MASSIVE_URL == "https://api.massive.com"
