"""The REST client of Massive (formerly Polygon.io): auth, paging by next_url, retries with backoff, pacing. Plain
records, no Spark. The module keeps its Polygon name; the API, its paths and keys are the same under both names.

`classify` (how an answer is judged) and `backoff_seconds` (how long to wait) are shared with the asyncio
client of `lib.ingestion.async_client`, so both behave alike; this sync client (requests) serves the driver's paging.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import orjson  # parses an answer in a fraction of json's time: the executors' fan-out parses every call
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from lib.core.errors import PolygonAuthError, PolygonError, PolygonRequestFailed
from lib.ingestion.ratelimit import Pacer  # noqa: F401 (re-exported: lib.ingestion.rest_client.Pacer)

TICKERS_PATH = "/v3/reference/tickers"
GROUPED_PATH = "/v2/aggs/grouped/locale/us/market/stocks/{day}"
RANGE_PATH = "/v2/aggs/ticker/{ticker}/range/1/day/{start}/{end}"
OPEN_CLOSE_PATH = "/v1/open-close/{ticker}/{day}"
SPLITS_PATH = "/stocks/v1/splits"  # Massive's current corporate-action endpoints (v3/reference/* are deprecated)
DIVIDENDS_PATH = "/stocks/v1/dividends"
DETAILS_PATH = "/v3/reference/tickers/{ticker}"
# How messages name the API: Polygon.io renamed itself Massive on 2025-10-30 (same paths, same keys).
API_NAME = "Massive (formerly Polygon.io)"


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


# -- what both clients share: how an answer is judged, and how long to wait before trying again -------------
@dataclasses.dataclass(frozen=True)
class Outcome:
    """One attempt judged. kind: 'ok' (payload holds the JSON object), 'retry' (transient; retry_after from a
    429's header), 'auth' (401/403: stop the run), 'not_found' (an allowed 404: no data) or 'fatal' (any other
    4xx: retrying cannot help)."""

    kind: str
    http_status: int | None = None
    payload: dict | None = None
    retry_after: float | None = None
    message: str = ""


def classify(
    status: int, body: bytes | str, *, retry_after: str | None = None, allow_not_found: bool = False, path: str = ""
) -> Outcome:
    """Judge one HTTP answer (status, body, Retry-After header). Pure: the sync and async clients both use it."""
    if status in (401, 403):
        what = (
            # "the API key was refused (check POLYGON_API_KEY)" stays verbatim: tests and scripts match that text.
            "the API key was refused (check POLYGON_API_KEY), or MASSIVE_API_KEY or the api_key_secret_id secret, "
            "wherever your key is set"
            if status == 401
            else "your Polygon plan is not entitled to this endpoint or date range (plans are Massive's now)"
        )
        detail = _error_detail(body)
        return Outcome("auth", status, message=f"{API_NAME} answered {status} for {path}: {what}. {detail}".strip())
    if status == 429 or status >= 500:
        return Outcome("retry", status, retry_after=retry_after_seconds(retry_after), message=f"HTTP {status}")
    if status == 404 and allow_not_found:
        return Outcome("not_found", status)
    if status >= 400:
        return Outcome("fatal", status, message=f"{API_NAME} answered {status} for {path}: {_error_detail(body)}")
    try:
        payload = orjson.loads(body)
    except ValueError:  # orjson.JSONDecodeError and UnicodeDecodeError alike: a cut or garbled body
        return Outcome("retry", status, message=f"malformed JSON in a {status} answer")
    if not isinstance(payload, dict):
        return Outcome("retry", status, message="the answer is not a JSON object")
    return Outcome("ok", status, payload=payload)


def settle(outcome: Outcome) -> tuple[bool, dict | None]:
    """(True, payload) for a final answer (payload None when not found); raises for a refused key or a
    fatal answer; (False, None) when the caller should try again."""
    if outcome.kind == "ok":
        return True, outcome.payload
    if outcome.kind == "not_found":
        return True, None
    if outcome.kind == "auth":
        raise PolygonAuthError(outcome.message)
    if outcome.kind == "fatal":
        raise PolygonError(outcome.message)
    return False, None


def transport_failure(description: str) -> Outcome:
    """A timeout, reset or truncated body: no usable answer, worth another attempt."""
    return Outcome("retry", None, message=description)


def backoff_seconds(attempt: int, settings: ClientSettings, retry_after: float | None = None, uniform=random.uniform):
    """Wait after failed attempt number `attempt` (1-based): exponential with full jitter, never less than Retry-After."""
    ceiling = min(settings.backoff_max_s, settings.backoff_initial_s * 2 ** (attempt - 1))
    return max(uniform(ceiling / 2, ceiling), retry_after or 0.0)  # jitter keeps parallel clients apart


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
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


_retry_after_seconds = retry_after_seconds  # the former private name


def _error_detail(body: bytes | str) -> str:
    try:
        payload = orjson.loads(body)
        return str(payload.get("error") or payload.get("message") or "") if isinstance(payload, dict) else ""
    except ValueError:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return text[:200]


def rebase(base_url: str, next_url: str) -> str:
    """Keep next_url's path and query, on our base URL: the key never goes to another host."""
    base_url = base_url.rstrip("/")
    parts = urlsplit(next_url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("apikey="))
    path = parts.path + (f"?{query}" if query else "")
    base_path = urlsplit(base_url).path.rstrip("/")
    if base_path and path.startswith(base_path + "/"):
        path = path[len(base_path) :]
    return base_url + path


def period_key(record: dict) -> tuple:
    """What tells two reference records of tickers apart: the ticker, the security (composite FIGI) and, for a
    ticker no longer active, the day it was delisted (a ticker reused by two securities without FIGIs)."""
    return (record.get("ticker"), record.get("composite_figi"), str(record.get("delisted_utc") or "")[:10])


def ticker_path(template: str, ticker: str, **dates: dt.date) -> str:
    """An endpoint path with the ticker percent-encoded (a '/' in a ticker must not open a new path segment)."""
    return template.format(ticker=quote(ticker, safe=""), **{k: d.isoformat() for k, d in dates.items()})


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
        return rebase(self.base_url, next_url)

    def _url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))

    # -- one request with retries ---------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_seconds(state.attempt_number, self.settings, getattr(exc, "retry_after", None))

    def _attempt(self, url: str, params: dict | None, endpoint: str, allow_not_found: bool) -> dict | None:
        self.pacer.wait()
        with self._count_lock:
            self.calls[endpoint] += 1
        path = urlsplit(url).path
        try:
            response = self.session.get(url, params=params, timeout=self.settings.timeout_s)
            outcome = classify(response.status_code, response.content, retry_after=response.headers.get("Retry-After"),
                               allow_not_found=allow_not_found, path=path)  # fmt: skip
        except requests.Timeout:
            outcome = transport_failure(f"timed out after {self.settings.timeout_s}s")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:  # fmt: skip
            outcome = transport_failure(f"connection error: {type(exc).__name__}")
        final, payload = settle(outcome)
        if final:
            return payload
        raise _Retryable(outcome.message, http_status=outcome.http_status, retry_after=outcome.retry_after)

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
    def tickers(self, as_of: dt.date | None = None, active: bool = True, limit: int = 1000,
                ticker: str | None = None) -> list[dict]:
        """The reference records of the stock tickers listed on as_of (default today) that are active on it (or, with
        active=False, no longer), optionally of one ticker. One record per ticker period: a ticker that two securities
        held (a reuse) or a security held under two tickers (a rename) gives a record each; a cursor that serves a
        page twice must not double the universe."""
        params: dict[str, Any] = {"market": "stocks", "active": str(active).lower(), "limit": limit}
        if as_of:
            params["date"] = as_of.isoformat()
        if ticker:
            params["ticker"] = ticker
        records: dict[tuple, dict] = {}
        for page in self.paginate(TICKERS_PATH, params, endpoint="tickers"):
            for record in page.get("results") or []:
                records.setdefault(period_key(record), record)
        return list(records.values())

    def delisted_tickers(self, since: dt.date, until: dt.date | None = None, limit: int = 1000) -> list[dict]:
        """Tickers no longer active whose delisted_utc is on or after `since` (a backfill's span still has their bars)
        and on or before `until` (a run of a past day does not know what came later: the ticker still trades then),
        one record per ticker period (a ticker freed and listed again by another security was delisted once per holder)."""
        records: dict[tuple, dict] = {}
        params: dict[str, Any] = {"market": "stocks", "active": "false", "limit": limit}
        for page in self.paginate(TICKERS_PATH, params, endpoint="tickers"):
            for record in page.get("results") or []:
                delisted = str(record.get("delisted_utc") or "")[:10]
                if delisted and delisted >= since.isoformat() and (until is None or delisted <= until.isoformat()):
                    records.setdefault(period_key(record), record)
        return list(records.values())

    def ticker_details(self, ticker: str, as_of: dt.date) -> dict | None:
        """Massive's ticker overview of the security that traded as ticker on as_of (its list_date among the rest);
        None when nobody held the ticker that day."""
        page = self.get_json(ticker_path(DETAILS_PATH, ticker), {"date": as_of.isoformat()}, endpoint="ticker_details",
                             allow_not_found=True)  # fmt: skip
        return (page or {}).get("results") or None

    def splits(self, start: dt.date, end: dt.date, limit: int = 5000) -> list[dict]:
        """Every split with an execution date in start..end, all tickers, following next_url."""
        params = {"execution_date.gte": start.isoformat(), "execution_date.lte": end.isoformat(), "limit": limit,
                  "sort": "execution_date.asc"}  # fmt: skip
        return self._records(SPLITS_PATH, params, "splits")

    def dividends(self, start: dt.date, end: dt.date, limit: int = 5000) -> list[dict]:
        """Every cash dividend with an ex-dividend date in start..end, all tickers, following next_url."""
        params = {"ex_dividend_date.gte": start.isoformat(), "ex_dividend_date.lte": end.isoformat(), "limit": limit,
                  "sort": "ex_dividend_date.asc"}  # fmt: skip
        return self._records(DIVIDENDS_PATH, params, "dividends")

    def _records(self, path: str, params: dict, endpoint: str) -> list[dict]:
        # One record per id: a cursor that serves a page twice must not double an action.
        records: dict[str, dict] = {}
        for page in self.paginate(path, params, endpoint=endpoint):
            for record in page.get("results") or []:
                records.setdefault(str(record.get("id")), record)
        return list(records.values())

    def grouped_daily(self, day: dt.date, adjusted: bool = True) -> list[dict]:
        page = self.get_json(
            GROUPED_PATH.format(day=day.isoformat()), {"adjusted": str(adjusted).lower()}, endpoint="grouped"
        )
        return list(page.get("results") or [])

    def aggs_range(self, ticker: str, start: dt.date, end: dt.date, adjusted: bool = True) -> list[dict]:
        path = ticker_path(RANGE_PATH, ticker, start=start, end=end)
        params = {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": 50000}
        bars: list[dict] = []
        for page in self.paginate(path, params, endpoint="range"):
            bars.extend(page.get("results") or [])
        return bars

    def open_close(self, ticker: str, day: dt.date, adjusted: bool = True) -> dict | None:
        """The day's bar, or None when the API answers 404 NOT_FOUND (no bar that day)."""
        path = ticker_path(OPEN_CLOSE_PATH, ticker, day=day)
        return self.get_json(path, {"adjusted": str(adjusted).lower()}, endpoint="open_close", allow_not_found=True)

