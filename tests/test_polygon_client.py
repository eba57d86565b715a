"""The Polygon client against the simulator's real HTTP server: paging, auth, retries, 404s, the key's path."""

from __future__ import annotations

import datetime as dt

import pytest

from lib.errors import PolygonAuthError, PolygonRequestFailed
from lib.polygon import ClientSettings, PolygonClient
from lib.simulator import SimulatorProcess, universe

KEY = "test-canary-key-7f3a9"
TICKERS = 23


@pytest.fixture(scope="module")
def simulator():
    with SimulatorProcess(tickers=TICKERS, api_key=KEY) as sim:
        yield sim


@pytest.fixture(scope="module")
def faulty_simulator():
    # Every ticker page and bar call fails at random half the time; FAILX always fails.
    with SimulatorProcess(tickers=TICKERS, api_key=KEY, fault_rate=0.5, faults="500,503,reset,malformed,truncated",
                          fault_seed=7) as sim:  # fmt: skip
        yield sim


def client(sim, key=KEY, **overrides) -> PolygonClient:
    settings = dict(base_url=sim.base_url, api_key=key, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
    return PolygonClient(ClientSettings(**{**settings, **overrides}))


def test_tickers_follow_every_page(simulator):
    polygon = client(simulator)
    records = polygon.tickers(limit=5)
    assert len(records) == TICKERS
    assert len({r["ticker"] for r in records}) == TICKERS
    assert polygon.calls["tickers"] == 5  # 23 tickers in pages of 5


def test_tickers_as_of_a_date_leave_out_later_listings(simulator):
    polygon = client(simulator)
    listed = {r["ticker"]: r for r in universe(TICKERS, 42)}
    early = polygon.tickers(as_of=dt.date(2000, 1, 3), limit=1000)
    assert len(early) < len(listed) or all(r for r in early)
    assert {r["ticker"] for r in early} <= set(listed)


def test_next_url_from_another_host_is_rebased(simulator):
    polygon = client(simulator)
    rebased = polygon.rebase("https://evil.example.com/v3/reference/tickers?cursor=abc&apiKey=stolen")
    assert rebased == f"{simulator.base_url}/v3/reference/tickers?cursor=abc"


def test_key_travels_only_in_the_header(simulator):
    polygon = client(simulator)
    seen = []
    polygon.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    polygon.tickers(limit=10)
    polygon.grouped_daily(dt.date(2024, 3, 28))
    assert seen and all(KEY not in r.request.url for r in seen)
    assert all(r.request.headers["Authorization"] == f"Bearer {KEY}" for r in seen)


def test_bad_key_stops_at_once_without_retry(simulator):
    polygon = client(simulator, key="wrong-key")
    with pytest.raises(PolygonAuthError, match="401") as error:
        polygon.grouped_daily(dt.date(2024, 3, 28))
    assert polygon.calls["grouped"] == 1
    assert "wrong-key" not in str(error.value)


def test_open_close_404_means_no_bar(simulator):
    polygon = client(simulator)
    ticker = universe(TICKERS, 42)[0]["ticker"]
    assert polygon.open_close(ticker, dt.date(2024, 3, 29)) is None  # Good Friday
    bar = polygon.open_close(ticker, dt.date(2024, 3, 28))
    assert bar["symbol"] == ticker and bar["from"] == "2024-03-28"


def test_range_agrees_with_grouped(simulator):
    polygon = client(simulator)
    day = dt.date(2024, 3, 28)
    grouped = {b["T"]: b for b in polygon.grouped_daily(day)}
    ticker = sorted(grouped)[0]
    (ranged,) = polygon.aggs_range(ticker, day, day)
    assert {k: ranged[k] for k in "ohlcv"} == {k: grouped[ticker][k] for k in "ohlcv"}


def test_transient_faults_are_retried_until_success(faulty_simulator):
    polygon = client(faulty_simulator, max_attempts=12)
    records = polygon.tickers(limit=5)
    assert len(records) == TICKERS
    assert sum(polygon.retries.values()) > 0, "a 50 % fault rate must have caused retries"


def test_a_request_that_keeps_failing_raises_with_its_attempts(simulator):
    with SimulatorProcess(tickers=TICKERS, api_key=KEY, fault_rate=1.0, faults="503") as always_failing:
        polygon = client(always_failing, max_attempts=3)
        with pytest.raises(PolygonRequestFailed) as error:
            polygon.grouped_daily(dt.date(2024, 3, 28))
    assert error.value.attempts == 3
    assert error.value.http_status == 503
    assert polygon.calls["grouped"] == 3
