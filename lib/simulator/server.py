"""The HTTP server compatible with Massive (formerly Polygon.io): aiohttp handlers for the reference, aggregate and
corporate-action endpoints, auth, latency and faults as middleware."""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import dataclasses
import datetime as dt
import json
import os
import re
import signal
import sys
import time
from collections import OrderedDict
from urllib.parse import quote

from aiohttp import web

from lib.core.trading_days import today_new_york
from lib.simulator import corporate
from lib.simulator.data import NEW_YORK, RANGE_KEYS, Listing, Market, calendar, columns_to_bars
from lib.simulator.encode import bars_json, range_bars_json, ticker_prefixes
from lib.simulator.faults import Defects, FaultSettings, fault_middleware
from lib.simulator.feed import FEED_PATH, Feed, FeedSettings

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DIGITS = re.compile(r"^\d{1,15}$")
_TICKER_FILTERS = (
    "market", "active", "date", "ticker", "ticker.lt", "ticker.lte", "ticker.gt", "ticker.gte",
    "type", "exchange", "cik", "search", "sort", "order",
)
_SORTABLE = ("ticker", "name", "market", "locale", "primary_exchange", "type", "currency_name", "cik",
             "composite_figi", "share_class_figi", "last_updated_utc")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    tickers: int = 300
    seed: int = 42
    latency_ms: float = 0.0
    api_key: str | None = None  # only this key is accepted when set (from $MASSIVE_API_KEY or $POLYGON_API_KEY)
    faults: FaultSettings = dataclasses.field(default_factory=FaultSettings)
    defects: Defects = dataclasses.field(default_factory=Defects)
    as_of: dt.date | None = None  # the simulator's today (bars, listings, actions, adjusted=true); None: the real today
    # ticker -> the day a vendor publishes, late, its splits and dividends whose ex-date is before that day
    late_actions: dict = dataclasses.field(default_factory=dict)
    feed: FeedSettings = dataclasses.field(default_factory=FeedSettings)  # the websocket feed at /stocks


class BadRequest(Exception):
    """A 400: the message says what was expected and what came."""


def request_id() -> str:
    return os.urandom(16).hex()


def json_response(payload: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str, status_text: str = "ERROR", key: str = "error") -> web.Response:
    return json_response({"status": status_text, "request_id": request_id(), key: message}, status=status)


def not_found(message: str = "Data not found.") -> web.Response:
    return error_response(404, message, status_text="NOT_FOUND", key="message")


def _parse_date(text: str, what: str) -> dt.date:
    if _DATE.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise BadRequest(f"Could not parse the {what} parameter: expected a date as YYYY-MM-DD, got '{text}'.")


def _parse_bool(text: str | None, what: str, default: bool) -> bool:
    if text is None or text == "":
        return default
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadRequest(f"Could not parse the {what} parameter: expected true or false, got '{text}'.")


def _parse_int(text: str | None, what: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"Could not parse the {what} parameter: expected an integer, got '{text}'.") from None
    if value < low:
        raise BadRequest(f"The {what} parameter must be at least {low}, got {value}.")
    return min(value, high)  # like Polygon, a limit above the maximum is clamped


def encode_cursor(state: dict) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        state = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadRequest("The cursor parameter is not a cursor this server issued; follow next_url as given.") from None
    if not isinstance(state, dict):
        raise BadRequest("The cursor parameter is not a cursor this server issued; follow next_url as given.")
    return state


class _Today:
    """today_new_york(), re-read at most once a second (the hot path must not build pandas Timestamps)."""

    def __init__(self, fixed: dt.date | None = None):
        self._fixed = fixed
        self._value = fixed or today_new_york()
        self._expires = time.monotonic() + 1.0

    def __call__(self) -> dt.date:
        if self._fixed is not None:
            return self._fixed
        now = time.monotonic()
        if now >= self._expires:
            self._value = today_new_york()
            self._expires = now + 1.0
        return self._value


class Simulator:
    """The request handlers over one Market."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.market = Market(settings.tickers, settings.seed)
        self.calendar = calendar()
        self.today = _Today(settings.as_of)
        self.defects = settings.defects
        uni = self.market.universe
        # Reference records in ticker order (one per security and ticker), pre-serialised; a record also as it reads
        # once the ticker is gone (a delisting, or a rename away from it).
        self._records = uni.records
        self._record_json = [json.dumps(r, separators=(",", ":")).encode() for r in uni.records]
        self._record_list_date = [listing.start for listing in uni.listings]
        self._record_delist_date = [listing.end for listing in uni.listings]
        self._delisted_json = {
            i: json.dumps(self._records[i] | {"active": False, "delisted_utc": f"{day.isoformat()}T00:00:00Z"},
                          separators=(",", ":")).encode()
            for i, day in enumerate(self._record_delist_date) if day is not None
        }  # fmt: skip
        self._ticker_prefixes = [ticker_prefixes(list(symbols)) for symbols in uni.epoch_symbols]  # by epoch, by id
        self._listings_of: dict[int, list[Listing]] = {}  # security id -> its ticker periods, oldest first
        for listing in sorted(uni.listings, key=lambda listing: listing.start):
            self._listings_of.setdefault(listing.tid, []).append(listing)
        self._by_figi = {r["composite_figi"]: listing.tid for listing, r in zip(uni.listings, uni.records, strict=True)
                         if "composite_figi" in r}  # fmt: skip
        self._filtered: OrderedDict[tuple, list[int]] = OrderedDict()
        self._grouped: OrderedDict[int, tuple[bytes, int]] = OrderedDict()
        self._grouped_capacity = max(8, min(512, (256 * 2**20) // (130 * settings.tickers)))

    # -- helpers ------------------------------------------------------------------------------
    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _last_session(self) -> int:
        return self.calendar.last_on_or_before(self.today())

    def _session(self, day: dt.date) -> int | None:
        return self.market.session_index(day, self.today())

    # -- /v3/reference/tickers -----------------------------------------------------------------
    def _point_in_time(self, date: str | None) -> dt.date:
        """The day a date parameter asks about: today when absent, and never after today (the future is unknown)."""
        today = self.today()
        return today if not date else min(_parse_date(date, "date"), today)

    def _ticker_indices(self, filters: dict) -> list[int]:
        key = (tuple(sorted(filters.items())), self._point_in_time(filters.get("date")))
        hit = self._filtered.get(key)
        if hit is not None:
            self._filtered.move_to_end(key)
            return hit
        records = self._records
        indices = range(len(records))
        market = filters.get("market")
        if market and market != "stocks":
            indices = []
        # Listed on the day (the date parameter, else today): listed on or before it; active unless delisted by then.
        as_of = self._point_in_time(filters.get("date"))
        active = _parse_bool(filters.get("active"), "active", True)
        indices = [i for i in indices if self._record_list_date[i] <= as_of and self._is_active(i, as_of) == active]
        for name, test in (
            ("ticker", lambda a, b: a == b), ("ticker.lt", lambda a, b: a < b), ("ticker.lte", lambda a, b: a <= b),
            ("ticker.gt", lambda a, b: a > b), ("ticker.gte", lambda a, b: a >= b),
        ):
            if name in filters:
                indices = [i for i in indices if test(records[i]["ticker"], filters[name])]
        for name, field in (("type", "type"), ("exchange", "primary_exchange"), ("cik", "cik")):
            if name in filters:
                indices = [i for i in indices if records[i].get(field) == filters[name]]
        if "search" in filters:
            term = filters["search"].lower()
            indices = [i for i in indices if term in records[i]["ticker"].lower() or term in records[i]["name"].lower()]
        sort = filters.get("sort", "ticker")
        if sort not in _SORTABLE:
            raise BadRequest(f"The sort parameter must be one of {', '.join(_SORTABLE)}; got '{sort}'.")
        order = filters.get("order", "asc")
        if order not in ("asc", "desc"):
            raise BadRequest(f"The order parameter must be asc or desc, got '{order}'.")
        indices = list(indices)
        if sort != "ticker":
            indices.sort(key=lambda i: (records[i].get(sort) is None, records[i].get(sort) or "", records[i]["ticker"]))
        if order == "desc":
            indices.reverse()
        self._filtered[key] = indices
        if len(self._filtered) > 64:
            self._filtered.popitem(last=False)
        return indices

    def _is_active(self, i: int, day: dt.date) -> bool:
        delisted = self._record_delist_date[i]
        return delisted is None or day < delisted

    def _record_bytes(self, i: int, day: dt.date) -> bytes:
        return self._record_json[i] if self._is_active(i, day) else self._delisted_json[i]

    async def tickers(self, request: web.Request) -> web.Response:
        query = request.query
        cursor = query.get("cursor")
        if cursor:
            state = decode_cursor(cursor)
            filters = {k: str(v) for k, v in state.get("f", {}).items() if k in _TICKER_FILTERS}
            offset = int(state.get("o", 0))
            limit = _parse_int(query.get("limit") or str(state.get("l", 100)), "limit", 100, 1, 1000)
            repeated = bool(state.get("r"))
        else:
            filters = {k: query[k] for k in _TICKER_FILTERS if query.get(k)}
            offset, repeated = 0, False
            limit = _parse_int(query.get("limit"), "limit", 100, 1, 1000)
        indices = self._ticker_indices(filters)
        page = indices[offset : offset + limit]
        day = self._point_in_time(filters.get("date"))
        parts = [b'{"results":[', b",".join(self._record_bytes(i, day) for i in page), b'],"status":"OK","request_id":"',
                 request_id().encode(), b'","count":', str(len(page)).encode()]
        if offset + limit < len(indices):
            # The repeat-page fault hands out the same page once more (the cursor remembers it already did).
            again = request.get("repeat_page") and not repeated
            state = {"f": filters, "o": offset if again else offset + limit, "l": limit}
            if again:
                state["r"] = 1
            next_url = f"{self._base(request)}/v3/reference/tickers?cursor={encode_cursor(state)}"
            parts += [b',"next_url":"', next_url.encode(), b'"']
        parts.append(b"}")
        return web.Response(body=b"".join(parts), content_type="application/json")

    # -- /v3/reference/tickers/{ticker} and /vX/reference/tickers/{id}/events -------------------------
    def _held_on(self, ticker: str, day: dt.date) -> Listing | None:
        """The period of the security that held ticker on day (listed by then, not yet renamed away or delisted)."""
        for listing in self.market.universe.holders.get(ticker, ()):
            if listing.start <= day and (listing.end is None or day < listing.end):
                return listing
        return None

    async def ticker_details(self, request: web.Request) -> web.Response:
        """Massive's ticker overview: the security trading under the ticker on `date` (default today). A ticker nobody
        held that day (renamed away, delisted, not yet listed) is a 404, as Massive answers RMG after it became RMO."""
        day = self._point_in_time(request.query.get("date"))
        listing = self._held_on(request.match_info["ticker"], day)
        if listing is None:
            return not_found("Ticker not found.")
        first = self._listings_of[listing.tid][0]
        details = {k: v for k, v in listing.record.items() if k != "last_updated_utc"}
        details |= {"ticker_root": listing.ticker, "list_date": first.start.isoformat()}
        return json_response({"request_id": request_id(), "results": details, "status": "OK"})

    async def ticker_events(self, request: web.Request) -> web.Response:
        """Massive's ticker events: a security's ticker_change events known today, newest first, found by composite
        FIGI or by ticker. A ticker means the security holding it today (Massive's rule); one nobody holds any more
        finds the last security that did, where Massive leaves it to ticker details with a past date."""
        today = self.today()
        types = [t.strip() for t in request.query.get("types", "").split(",") if t.strip()]
        unknown = sorted(set(types) - {"ticker_change"})
        if unknown:
            raise BadRequest(f"The types parameter takes a comma-separated list of ticker_change; got {', '.join(unknown)}.")
        identifier = request.match_info["id"]
        tid = self._by_figi.get(identifier)
        if tid is None:
            held = [listing for listing in self.market.universe.holders.get(identifier, ()) if listing.start <= today]
            current = self._held_on(identifier, today)
            tid = current.tid if current is not None else (held[-1].tid if held else None)
        periods = [listing for listing in self._listings_of.get(tid, ()) if listing.start <= today]
        if not periods:
            return not_found("Ticker not found.")
        record = periods[-1].record
        results = {"name": record["name"]}
        results |= {k: record[k] for k in ("composite_figi", "cik") if k in record}
        results["events"] = [
            {"ticker_change": {"ticker": listing.ticker}, "type": "ticker_change", "date": listing.start.isoformat()}
            for listing in reversed(periods)
        ]
        return json_response({"results": results, "status": "OK", "request_id": request_id()})

    # -- /v2/aggs/grouped ----------------------------------------------------------------------
    def _grouped_results(self, g: int, adjusted: bool) -> tuple[bytes, int]:
        # adjusted=true depends on the day asked (splits executed since g apply), so today is part of the key.
        as_of_g = self._last_session() if adjusted else None
        key = (g, as_of_g)
        hit = self._grouped.get(key)
        if hit is not None:
            self._grouped.move_to_end(key)
            return hit
        day = self.calendar.iso[g]
        columns = self.market.day_columns(g, adjusted_as_of=as_of_g)
        if self.defects.touches_day(day) or columns["adjusted"]:
            symbols = self.market.universe.symbols_on(g)
            bars = [{"T": symbols[i], **b} for i, b in zip(columns["ids"].tolist(), columns_to_bars(columns), strict=True)]
            if self.defects.touches_day(day):
                bars = self.defects.apply_grouped(bars, day)
            hit = (json.dumps(bars, separators=(",", ":")).encode(), len(bars))
        else:
            prefixes = self._ticker_prefixes[self.market.universe.epoch(g)][:, columns["ids"]]
            hit = (bars_json(*(columns[k] for k in RANGE_KEYS), prefixes=prefixes), len(columns["ids"]))
        self._grouped[key] = hit
        if len(self._grouped) > self._grouped_capacity:
            self._grouped.popitem(last=False)
        return hit

    async def grouped(self, request: web.Request) -> web.Response:
        day = _parse_date(request.match_info["date"], "date")
        adjusted = _parse_bool(request.query.get("adjusted"), "adjusted", True)
        _parse_bool(request.query.get("include_otc"), "include_otc", False)  # no OTC tickers here
        g = self._session(day)
        results, count = self._grouped_results(g, adjusted) if g is not None else (b"", 0)
        if not count:
            # Polygon answers a day without bars with zero counts and no results key.
            return json_response({"queryCount": 0, "resultsCount": 0, "adjusted": adjusted, "status": "OK",
                                  "request_id": request_id()})
        head = f'{{"queryCount":{count},"resultsCount":{count},"adjusted":{"true" if adjusted else "false"},"results":'
        tail = f',"status":"OK","request_id":"{request_id()}","count":{count}}}'
        return web.Response(body=b"".join((head.encode(), results, tail.encode())), content_type="application/json")

    # -- /v2/aggs/ticker/.../range --------------------------------------------------------------
    def _time_bound(self, text: str, what: str) -> int:
        """A from/to parameter as epoch ms: a date means 00:00 New York, which is each daily bar's timestamp."""
        if _DIGITS.match(text):
            return int(text)
        if _DATE.match(text):
            day = _parse_date(text, what)
            return int(dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()) * 1000
        raise BadRequest(
            f"Could not parse the '{what}' parameter: expected YYYY-MM-DD or a Unix timestamp in milliseconds, got '{text}'."
        )

    async def aggs_range(self, request: web.Request) -> web.Response:
        info = request.match_info
        ticker, multiplier, timespan = info["ticker"], info["multiplier"], info["timespan"]
        if multiplier != "1" or timespan != "day":
            raise BadRequest(
                f"This simulator serves daily bars only: expected multiplier 1 and timespan 'day', "
                f"got multiplier '{multiplier}' and timespan '{timespan}'."
            )
        from_raw, to_raw = info["from"], info["to"]
        start_ms, end_ms = self._time_bound(from_raw, "from"), self._time_bound(to_raw, "to")
        query = request.query
        state = decode_cursor(query["cursor"]) if query.get("cursor") else {}
        adjusted = _parse_bool(query.get("adjusted") or state.get("adjusted"), "adjusted", True)
        limit = _parse_int(query.get("limit") or (str(state["limit"]) if "limit" in state else None), "limit", 5000, 1, 50000)
        sort = query.get("sort") or state.get("sort") or "asc"
        if sort not in ("asc", "desc"):
            raise BadRequest(f"The sort parameter must be asc or desc, got '{sort}'.")

        total, page_json, next_t = 0, b"", None
        if start_ms <= end_ms:
            midnights = self.calendar.midnight_ms
            first_g = int(bisect.bisect_left(midnights, start_ms))
            last_g = min(int(bisect.bisect_right(midnights, end_ms)) - 1, self._last_session())
            # The bars traded as this ticker: a renamed security's under its old ticker until the change only.
            columns = self.market.symbol_columns(ticker, first_g, last_g, self._last_session() if adjusted else None)
            total = len(columns["t"])
            if total:
                step = 1 if sort == "asc" else -1
                page = {k: columns[k][::step][:limit] for k in RANGE_KEYS}
                if total > limit:
                    next_t = int(columns["t"][limit] if sort == "asc" else columns["t"][total - 1 - limit])
                if self.defects.touches(ticker) or columns.get("adjusted"):
                    bars = columns_to_bars(page)
                    if self.defects.touches(ticker):
                        bars = self.defects.apply_range(bars, ticker, self.calendar)
                    page_json = json.dumps(bars, separators=(",", ":")).encode()
                    count = len(bars)
                else:
                    page_json = range_bars_json(*(page[k] for k in RANGE_KEYS))
                    count = len(page["t"])
        head = {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": adjusted}
        if page_json:
            head["queryCount"] = head["resultsCount"] = count
        parts = [json.dumps(head, separators=(",", ":")).encode()[:-1]]
        if page_json:
            parts += [b',"results":', page_json]
        parts.append(f',"status":"OK","request_id":"{request_id()}","count":{count if page_json else 0}'.encode())
        if next_t is not None:
            # Like Polygon: the next page starts at the first bar not served; the cursor keeps limit and sort.
            cursor = encode_cursor({"adjusted": "true" if adjusted else "false", "limit": limit, "sort": sort})
            next_from, next_to = (next_t, to_raw) if sort == "asc" else (from_raw, next_t)
            path = f"/v2/aggs/ticker/{quote(ticker, safe='')}/range/1/day/{next_from}/{next_to}"
            url = f"{self._base(request)}{path}?cursor={cursor}"
            parts.append(b',"next_url":' + json.dumps(url).encode())
        parts.append(b"}")
        return web.Response(body=b"".join(parts), content_type="application/json")

    # -- /v1/open-close ------------------------------------------------------------------------
    async def open_close(self, request: web.Request) -> web.Response:
        info = request.match_info
        ticker, text = info["ticker"], info["date"]
        day = _parse_date(text, "date")
        adjusted = _parse_bool(request.query.get("adjusted"), "adjusted", True)
        g = self._session(day)
        listing = None if g is None else self.market.universe.holder(ticker, g)
        as_of_g = self._last_session() if adjusted else None
        cell = None if listing is None else self.market.cell(listing.tid, g, adjusted_as_of=as_of_g)
        if cell is None or self.defects.halted(ticker, text):
            return not_found()
        payload = {
            "status": "OK",
            "from": text,
            "symbol": ticker,
            "open": cell["o"],
            "high": cell["h"],
            "low": cell["l"],
            "close": cell["c"],
            "volume": cell["v"],
            "afterHours": cell["ah"],
            "preMarket": cell["pm"],
            "request_id": request_id(),
        }
        if self.defects:
            self.defects.apply_open_close(payload, ticker, text)
        return json_response(payload)


    # -- splits and dividends -----------------------------------------------------------------------
    def actions_handler(self, endpoint: corporate.Endpoint):
        """A handler for one corporate-action listing: filters, sort, limit, and a cursor in next_url."""
        known = (*corporate.filter_params(endpoint), "sort", *(("order",) if endpoint.v3 else ()))
        cache: dict[dt.date, list[dict]] = {}

        async def handler(request: web.Request) -> web.Response:
            query = request.query
            if query.get("cursor"):
                state = decode_cursor(query["cursor"])
                filters = {k: str(v) for k, v in state.get("f", {}).items() if k in known}
                offset = int(state.get("o", 0))
                limit = _parse_int(str(state.get("l", endpoint.default_limit)), "limit", endpoint.default_limit, 1,
                                   endpoint.max_limit)  # fmt: skip
            else:
                filters = {k: query[k] for k in known if query.get(k)}
                offset = 0
                limit = _parse_int(query.get("limit"), "limit", endpoint.default_limit, 1, endpoint.max_limit)
            today = self.today()
            if today not in cache:
                cache.clear()
                cache[today] = corporate.served_records(endpoint, self.settings.tickers, self.settings.seed, today,
                                                         late=self.settings.late_actions)
            try:
                chosen = corporate.select(endpoint, cache[today], filters)
            except corporate.QueryError as exc:
                raise BadRequest(str(exc)) from None
            page = chosen[offset : offset + limit]
            payload = {"results": page, "status": "OK", "request_id": request_id()}
            if offset + limit < len(chosen):
                cursor = encode_cursor({"f": filters, "o": offset + limit, "l": limit})
                payload["next_url"] = f"{self._base(request)}{endpoint.path}?cursor={cursor}"
            return json_response(payload)

        return handler


def auth_middleware(settings: ServerSettings):
    """Bearer header or apiKey query parameter; JSON for every error; optional latency. Keys are never logged."""
    expected = settings.api_key
    latency = settings.latency_ms / 1000.0

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path == FEED_PATH:  # the websocket feed authenticates in-band (its auth action)
            return await handler(request)
        key = None
        header = request.headers.get("Authorization")
        if header and header[:7].lower() == "bearer ":
            key = header[7:].strip()
        if not key:
            key = request.query.get("apiKey") or request.query.get("apikey")
        if not key:
            return error_response(401, "API Key was not provided")
        if expected is not None and key != expected:
            return error_response(401, "Unknown API Key")
        if latency:
            await asyncio.sleep(latency)
        try:
            return await handler(request)
        except BadRequest as exc:
            return error_response(400, str(exc))
        except web.HTTPNotFound:
            return not_found("Not found: no endpoint at this path.")
        except web.HTTPMethodNotAllowed:
            return error_response(405, f"Method {request.method} is not allowed; this API answers GET.")

    return middleware


def build_app(settings: ServerSettings) -> web.Application:
    simulator = Simulator(settings)
    middlewares = [auth_middleware(settings)]
    if settings.faults.active:
        middlewares.append(fault_middleware(settings.faults))
    app = web.Application(middlewares=middlewares)
    app["simulator"] = simulator
    feed = Feed(settings.feed, settings.tickers, settings.seed, settings.api_key, simulator.today)
    app["feed"] = feed
    app.router.add_get(FEED_PATH, feed.handler)
    app.router.add_get("/v3/reference/tickers", simulator.tickers)
    app.router.add_get("/v3/reference/tickers/{ticker}", simulator.ticker_details)
    app.router.add_get("/vX/reference/tickers/{id}/events", simulator.ticker_events)
    app.router.add_get("/v2/aggs/grouped/locale/us/market/stocks/{date}", simulator.grouped)
    app.router.add_get(
        "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}", simulator.aggs_range
    )
    app.router.add_get("/v1/open-close/{ticker}/{date}", simulator.open_close)
    for endpoint in corporate.ENDPOINTS:
        app.router.add_get(endpoint.path, simulator.actions_handler(endpoint))
    return app


async def serve(settings: ServerSettings) -> None:
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the real port when --port 0
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"simulator listening on http://{host}:{port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(settings: ServerSettings) -> None:
    try:
        import uvloop  # optional: faster when present

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
