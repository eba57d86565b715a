"""The asyncio client of Massive (formerly Polygon.io), on aiohttp, for executor fan-out: the sync client's
semantics, a fraction of its CPU per call.

Same judgement of answers (`lib.ingestion.rest_client.classify`), same backoff (`lib.ingestion.rest_client.backoff_seconds`), same
pacing (`lib.ingestion.ratelimit.Pacer`), same typed errors; only the transport differs. One client lives on one
event loop (one Spark partition); the key travels only in the Authorization header.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from lib.core.errors import PolygonRequestFailed
from lib.ingestion.ratelimit import Pacer
from lib.ingestion.rest_client import (
    GROUPED_PATH,
    OPEN_CLOSE_PATH,
    RANGE_PATH,
    ClientSettings,
    Outcome,
    backoff_seconds,
    classify,
    rebase,
    settle,
    ticker_path,
    transport_failure,
)
from lib.settings.config import DEFAULT_CONCURRENCY


def run(coroutine):
    """Run a coroutine to completion on a new event loop: uvloop's where it is installed (not on Windows).

    uvloop's C event loop and transports cost less CPU per request than asyncio's, which is most of what a
    partition does while it waits on thousands of calls."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


class AsyncPolygonClient:
    """`async with AsyncPolygonClient(settings) as client: await client.open_close(...)`.

    concurrency bounds the connection pool (the caller bounds in-flight requests to the same number).
    pacer: a Pacer for this client's share of the rate cap; by default one at settings.max_calls_per_minute.
    """

    def __init__(self, settings: ClientSettings, concurrency: int = DEFAULT_CONCURRENCY, pacer: Pacer | None = None):
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.concurrency = concurrency
        self.pacer = pacer or Pacer(settings.max_calls_per_minute)
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncPolygonClient:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            headers={"Authorization": f"Bearer {self.settings.api_key}", "User-Agent": "stocks-workspace/0.1"},
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies; skipping the jar saves CPU on every call
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- one request with retries ---------------------------------------------------------------
    async def _attempt(self, url: str, endpoint: str, allow_not_found: bool) -> Outcome:
        await self.pacer.wait_async()
        self.calls[endpoint] += 1
        try:
            # encoded=True: our paths are percent-encoded already (ticker_path, next_url), so yarl need not re-encode.
            async with self.session.get(URL(url, encoded=True)) as response:
                body = await response.read()
                return classify(response.status, body, retry_after=response.headers.get("Retry-After"),
                                allow_not_found=allow_not_found, path=response.url.raw_path)  # fmt: skip
        except TimeoutError:
            return transport_failure(f"timed out after {self.settings.timeout_s}s")
        except aiohttp.ClientPayloadError as exc:  # the body was cut short (truncated, reset mid-body)
            return transport_failure(f"connection error: {type(exc).__name__}")
        except aiohttp.ClientError as exc:  # resets, refused connections, server disconnects
            return transport_failure(f"connection error: {type(exc).__name__}")

    async def get_json(self, path_or_url: str, *, endpoint: str, allow_not_found: bool = False) -> dict | None:
        """GET with retries; the JSON object, or None for an allowed 404. Raises PolygonAuthError, PolygonError,
        PolygonRequestFailed exactly as the sync client does."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base_url + path_or_url
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            outcome = await self._attempt(url, endpoint, allow_not_found)
            final, payload = settle(outcome)
            if final:
                return payload
            if attempt < attempts:
                self.retries[endpoint] += 1
                await asyncio.sleep(backoff_seconds(attempt, self.settings, outcome.retry_after))
        path = urlsplit(url).path
        raise PolygonRequestFailed(
            f"{path} failed after {attempts} attempts: {outcome.message}",
            url_path=path, http_status=outcome.http_status, attempts=attempts,
        )  # fmt: skip

    # -- endpoints ------------------------------------------------------------------------------
    async def grouped_daily(self, day: dt.date, adjusted: bool = True) -> list[dict]:
        path = GROUPED_PATH.format(day=day.isoformat()) + f"?adjusted={str(adjusted).lower()}"
        page = await self.get_json(path, endpoint="grouped")
        return list(page.get("results") or [])

    async def aggs_range(self, ticker: str, start: dt.date, end: dt.date, adjusted: bool = True) -> list[dict]:
        """Every bar of the span, following next_url (re-based onto our base URL) past 50,000 bars."""
        path = ticker_path(RANGE_PATH, ticker, start=start, end=end)
        page = await self.get_json(f"{path}?adjusted={str(adjusted).lower()}&sort=asc&limit=50000", endpoint="range")
        bars: list[dict] = []
        while page is not None:
            bars.extend(page.get("results") or [])
            next_url = page.get("next_url")
            if not next_url:
                break
            page = await self.get_json(rebase(self.base_url, next_url), endpoint="range")
        return bars

    async def open_close(self, ticker: str, day: dt.date, adjusted: bool = True) -> dict | None:
        """The day's bar, or None when the API answers 404 NOT_FOUND (no bar that day)."""
        path = ticker_path(OPEN_CLOSE_PATH, ticker, day=day) + f"?adjusted={str(adjusted).lower()}"
        return await self.get_json(path, endpoint="open_close", allow_not_found=True)
