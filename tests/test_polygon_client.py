"""The Polygon client against the simulator's real HTTP server: paging, auth, retries, 404s, the key's path."""

from __future__ import annotations

import datetime as dt

import pytest

from lib.core.errors import PolygonAuthError, PolygonRequestFailed
from lib.ingestion.rest_client import ClientSettings, PolygonClient
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


# -- the judgement both clients share ------------------------------------------------------------------------
def test_classify_judges_each_kind_of_answer():
    from lib.ingestion.rest_client import classify

    ok = classify(200, b'{"status":"OK","results":[]}')
    assert (ok.kind, ok.payload) == ("ok", {"status": "OK", "results": []})
    limited = classify(429, b'{"error":"slow down"}', retry_after="3")
    assert (limited.kind, limited.http_status, limited.retry_after) == ("retry", 429, 3.0)
    assert [classify(s, b"{}").kind for s in (500, 502, 503, 504)] == ["retry"] * 4
    assert classify(200, b'{"status":"OK","resu').kind == "retry"  # malformed or truncated JSON
    assert classify(200, b"\xff\xfe").kind == "retry"  # not even text
    assert classify(200, b"[1, 2]").kind == "retry"  # JSON, but not an object
    refused = classify(401, b'{"error":"Unknown API Key"}', path="/v1/open-close/A/2024-03-28")
    assert refused.kind == "auth" and "401" in refused.message and "POLYGON_API_KEY" in refused.message
    assert "not entitled" in classify(403, b"{}").message
    assert classify(404, b'{"status":"NOT_FOUND"}', allow_not_found=True).kind == "not_found"
    assert classify(404, b'{"status":"NOT_FOUND"}').kind == "fatal"
    bad = classify(400, b'{"error":"Could not parse the date"}')
    assert bad.kind == "fatal" and "Could not parse the date" in bad.message


def test_retry_after_reads_seconds_and_http_dates():
    from lib.ingestion.rest_client import retry_after_seconds

    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def test_backoff_grows_exponentially_with_jitter_and_respects_retry_after():
    from lib.ingestion.rest_client import backoff_seconds

    settings = ClientSettings(base_url="http://x", api_key="k", backoff_initial_s=0.5, backoff_max_s=4.0)
    top = lambda low, high: high  # noqa: E731 (the jitter's upper end)
    assert [backoff_seconds(a, settings, uniform=top) for a in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff_seconds(3, settings, uniform=lambda low, high: low) == 1.0  # full jitter: half to whole
    assert backoff_seconds(1, settings, retry_after=7.0, uniform=top) == 7.0


# -- Retry-After against the real server, both clients ---------------------------------------------------------
@pytest.fixture(scope="module")
def always_limited():
    with SimulatorProcess(tickers=TICKERS, api_key=KEY, fault_rate=1.0, faults="429", retry_after=1) as sim:
        yield sim


def test_sync_client_waits_retry_after_before_retrying(always_limited):
    import time

    polygon = client(always_limited, max_attempts=2)  # backoff alone would wait 10 ms
    started = time.monotonic()
    with pytest.raises(PolygonRequestFailed) as error:
        polygon.grouped_daily(dt.date(2024, 3, 28))
    assert time.monotonic() - started >= 1.0
    assert (error.value.http_status, error.value.attempts, polygon.retries["grouped"]) == (429, 2, 1)


def test_executor_event_loops_are_uvloop_where_it_is_installed():
    import asyncio

    from lib.ingestion import async_client

    async def loop_type():
        return type(asyncio.get_running_loop())

    uvloop = pytest.importorskip("uvloop")  # a dependency except on Windows, where asyncio's loop runs instead
    assert async_client.run(loop_type()) is uvloop.Loop


def test_classify_reads_polygon_numbers_exactly():
    from lib.ingestion.rest_client import classify

    payload = classify(200, b'{"v":1.5e9,"n":9007199254740993,"c":187.6800000001,"t":1711598400000}').payload
    assert payload == {"v": 1.5e9, "n": 9007199254740993, "c": 187.6800000001, "t": 1711598400000}
    assert isinstance(payload["n"], int) and isinstance(payload["v"], float)


def test_async_client_waits_retry_after_before_retrying(always_limited):
    import asyncio
    import time

    from lib.ingestion.async_client import AsyncPolygonClient

    settings = ClientSettings(base_url=always_limited.base_url, api_key=KEY, max_attempts=2, backoff_initial_s=0.01)

    async def fetch():
        async with AsyncPolygonClient(settings, concurrency=2) as polygon:
            started = time.monotonic()
            with pytest.raises(PolygonRequestFailed) as error:
                await polygon.open_close(universe(TICKERS, 42)[0]["ticker"], dt.date(2024, 3, 28))
            return time.monotonic() - started, error.value, polygon

    elapsed, error, polygon = asyncio.run(fetch())
    assert elapsed >= 1.0
    assert (error.http_status, error.attempts, polygon.calls["open_close"], polygon.retries["open_close"]) == (429, 2, 2, 1)


def test_async_client_stops_at_a_bad_key_without_retry(simulator):
    import asyncio

    from lib.ingestion.async_client import AsyncPolygonClient

    settings = ClientSettings(base_url=simulator.base_url, api_key="wrong-key", max_attempts=5)

    async def fetch():
        async with AsyncPolygonClient(settings) as polygon:
            with pytest.raises(PolygonAuthError, match="401") as error:
                await polygon.aggs_range("A", dt.date(2024, 3, 1), dt.date(2024, 3, 28))
            return error.value, polygon

    error, polygon = asyncio.run(fetch())
    assert polygon.calls["range"] == 1 and not polygon.retries
    assert "wrong-key" not in str(error)


def test_async_client_answers_like_the_sync_client_through_faults(simulator, faulty_simulator):
    import asyncio

    from lib.ingestion.async_client import AsyncPolygonClient

    tickers = [r["ticker"] for r in universe(TICKERS, 42)]
    day = dt.date(2024, 3, 28)
    expected = {t: client(simulator).open_close(t, day) for t in tickers}
    settings = ClientSettings(base_url=faulty_simulator.base_url, api_key=KEY, max_attempts=15,
                              backoff_initial_s=0.01, backoff_max_s=0.05)  # fmt: skip

    async def fetch():
        async with AsyncPolygonClient(settings, concurrency=4) as polygon:
            bars = await asyncio.gather(*(polygon.open_close(t, day) for t in tickers))
            return dict(zip(tickers, bars, strict=True)), polygon

    received, polygon = asyncio.run(fetch())
    strip = lambda bar: {k: v for k, v in bar.items() if k != "request_id"}  # noqa: E731
    assert {t: strip(b) for t, b in received.items()} == {t: strip(b) for t, b in expected.items()}
    assert sum(polygon.retries.values()) > 0, "a 50 % fault rate must have caused retries"
