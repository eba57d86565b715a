"""The Polygon REST client: auth, paging by next_url, retries with backoff, pacing. Plain records, no Spark."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from lib.errors import PolygonAuthError, PolygonError, PolygonRequestFailed

TICKERS_PATH = "/v3/reference/tickers"
GROUPED_PATH = "/v2/aggs/grouped/locale/us/market/stocks/{day}"
RANGE_PATH = "/v2/aggs/ticker/{ticker}/range/1/day/{start}/{end}"
OPEN_CLOSE_PATH = "/v1/open-close/{ticker}/{day}"


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs; picklable, so executors build their own client from it."""

    base_url: str
    api_key: str = dataclasses.field(repr=False)
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_calls_per_minute: float = 0.0
    pool_size: int = 16


class _Retryable(Exception):
    """A failure worth another attempt: 429, 5xx, timeouts, resets, malformed JSON."""

    def __init__(self, message: str, http_status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.retry_after = retry_after


class Pacer:
    """Spaces calls evenly so that at most `per_minute` start in any minute (0 means no limit)."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            return max(0.0, (parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


class PolygonClient:
    """Synchronous client on a requests Session. The key travels only in the Authorization header."""

    def __init__(self, settings: ClientSettings):
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=settings.pool_size, pool_maxsize=settings.pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Authorization"] = f"Bearer {settings.api_key}"
        self.session.headers["User-Agent"] = "stocks-workspace/0.1"
        self.pacer = Pacer(settings.max_calls_per_minute)
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    # -- URLs ---------------------------------------------------------------------------------
    def rebase(self, next_url: str) -> str:
        """Keep next_url's path and query, on our base URL: the key never goes to another host."""
        parts = urlsplit(next_url)
        query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("apikey="))
        path = parts.path + (f"?{query}" if query else "")
        base_path = urlsplit(self.base_url).path.rstrip("/")
        if base_path and path.startswith(base_path + "/"):
            path = path[len(base_path) :]
        return self.base_url + path

    def _url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))

    # -- one request with retries ---------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** (state.attempt_number - 1))
        backoff = random.uniform(backoff / 2, backoff)  # full jitter keeps parallel clients apart
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return max(backoff, retry_after)

    def _attempt(self, url: str, params: dict | None, endpoint: str, allow_not_found: bool) -> dict | None:
        self.pacer.wait()
        with self._count_lock:
            self.calls[endpoint] += 1
        try:
            response = self.session.get(url, params=params, timeout=self.settings.timeout_s)
        except requests.Timeout as exc:
            raise _Retryable(f"timed out after {self.settings.timeout_s}s") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:  # fmt: skip
            raise _Retryable(f"connection error: {type(exc).__name__}") from exc
        status = response.status_code
        if status in (401, 403):
            detail = _error_text(response)
            what = "the API key was refused (check POLYGON_API_KEY)" if status == 401 else (
                "your Polygon plan is not entitled to this endpoint or date range"
            )
            raise PolygonAuthError(f"Polygon answered {status} for {urlsplit(url).path}: {what}. {detail}".strip())
        if status == 429 or status >= 500:
            raise _Retryable(
                f"HTTP {status}", http_status=status, retry_after=_retry_after_seconds(response.headers.get("Retry-After"))
            )
        if status == 404 and allow_not_found:
            return None
        if status >= 400:
            raise PolygonError(f"Polygon answered {status} for {urlsplit(url).path}: {_error_text(response)}")
        try:
            payload = response.json()
        except (ValueError, json.JSONDecodeError) as exc:
            raise _Retryable(f"malformed JSON in a {status} answer", http_status=status) from exc
        if not isinstance(payload, dict):
            raise _Retryable("the answer is not a JSON object", http_status=status)
        return payload

    def get_json(self, path_or_url: str, params: dict | None = None, *, endpoint: str = "", allow_not_found=False):
        """GET with retries; returns the JSON object, or None for an allowed 404. Raises PolygonRequestFailed."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self._url(path_or_url)
        endpoint = endpoint or urlsplit(url).path
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
            before_sleep=lambda state: self._count_retry(endpoint),
        )
        try:
            return retrying(self._attempt, url, params, endpoint, allow_not_found)
        except _Retryable as exc:
            raise PolygonRequestFailed(
                f"{urlsplit(url).path} failed after {self.settings.max_attempts} attempts: {exc}",
                url_path=urlsplit(url).path,
                http_status=exc.http_status,
                attempts=self.settings.max_attempts,
            ) from None

    def _count_retry(self, endpoint: str) -> None:
        with self._count_lock:
            self.retries[endpoint] += 1

    def paginate(self, path: str, params: dict, *, endpoint: str) -> Iterator[dict]:
        """Yield every page, following next_url (re-based) until the API stops sending one."""
        page = self.get_json(path, params, endpoint=endpoint)
        while page is not None:
            yield page
            next_url = page.get("next_url")
            if not next_url:
                return
            page = self.get_json(self.rebase(next_url), endpoint=endpoint)

    # -- endpoints ------------------------------------------------------------------------------
    def tickers(self, as_of: dt.date | None = None, active: bool = True, limit: int = 1000) -> list[dict]:
        params: dict[str, Any] = {"market": "stocks", "active": str(active).lower(), "limit": limit}
        if as_of:
            params["date"] = as_of.isoformat()
        records: list[dict] = []
        for page in self.paginate(TICKERS_PATH, params, endpoint="tickers"):
            records.extend(page.get("results") or [])
        return records

    def grouped_daily(self, day: dt.date, adjusted: bool = True) -> list[dict]:
        page = self.get_json(
            GROUPED_PATH.format(day=day.isoformat()), {"adjusted": str(adjusted).lower()}, endpoint="grouped"
        )
        return list(page.get("results") or [])

    def aggs_range(self, ticker: str, start: dt.date, end: dt.date, adjusted: bool = True) -> list[dict]:
        path = RANGE_PATH.format(ticker=ticker, start=start.isoformat(), end=end.isoformat())
        params = {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": 50000}
        bars: list[dict] = []
        for page in self.paginate(path, params, endpoint="range"):
            bars.extend(page.get("results") or [])
        return bars

    def open_close(self, ticker: str, day: dt.date, adjusted: bool = True) -> dict | None:
        """The day's bar, or None when Polygon answers 404 NOT_FOUND (no bar that day)."""
        path = OPEN_CLOSE_PATH.format(ticker=ticker, day=day.isoformat())
        return self.get_json(path, {"adjusted": str(adjusted).lower()}, endpoint="open_close", allow_not_found=True)


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error") or body.get("message") or "")
    except ValueError:
        return response.text[:200]
