"""Fault injection for the simulator: transient HTTP failures as middleware, defective bars as static data edits."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import random
import socket
import struct

from aiohttp import web

FAULT_KINDS = ("429", "500", "502", "503", "504", "reset", "malformed", "truncated", "slow", "repeat")
DEFECT_KINDS = ("dup", "null_close", "high_low", "neg_volume", "price_spike", "volume_spike", "halt")
PRICE_SPIKE = 1.3  # price_spike: the close (and the high, to stay above it) times this, a bad print
VOLUME_SPIKE = 20.0  # volume_spike: the volume times this
RATE_LIMIT_MESSAGE = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. "
    "https://polygon.io/pricing"
)


@dataclasses.dataclass(frozen=True)
class FaultSettings:
    """Transient faults hit a fraction `rate` of authorised requests; `fail_tickers` fail every time with 500."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "503", "reset", "malformed", "slow")
    fail_tickers: frozenset[str] = frozenset()
    retry_after_s: int = 1
    slow_ms: float = 2000.0
    seed: int | None = None

    def __post_init__(self):
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; expected some of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"the fault rate must be within [0, 1], got {self.rate}")

    @property
    def active(self) -> bool:
        return bool((self.rate > 0 and self.kinds) or self.fail_tickers)


@dataclasses.dataclass(frozen=True)
class Defects:
    """Defective bars served on purpose: {(ticker, 'YYYY-MM-DD'): (kind, ...)} with kinds from DEFECT_KINDS.

    `halt` is a market event rather than a bad print: trading in the ticker is halted that day, so it has no bar (the
    grouped day leaves it out, its range aggregates skip the day, open-close answers 404), as Massive serves a halt.
    Like every defect it edits the REST answers; the websocket feed plays its day as generated."""

    cells: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None) -> Defects:
        """'dup:AAPL:2024-03-28,null_close:MSFT:2024-03-28,halt:IBM:2024-04-01..2024-04-26' -> Defects (a FROM..TO
        span, both ends included, puts the kind on every day of it)."""
        cells: dict[tuple[str, str], tuple[str, ...]] = {}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split(":")
            if len(parts) != 3 or parts[0] not in DEFECT_KINDS:
                raise ValueError(
                    f"a defect is KIND:TICKER:YYYY-MM-DD or KIND:TICKER:YYYY-MM-DD..YYYY-MM-DD with KIND one of "
                    f"{', '.join(DEFECT_KINDS)}; got '{item}'"
                )
            kind, ticker, days = parts
            for day in _days(days, item):
                cells[(ticker, day)] = cells.get((ticker, day), ()) + (kind,)
        return cls(cells)

    def __bool__(self) -> bool:
        return bool(self.cells)

    def touches(self, ticker: str) -> bool:
        return any(t == ticker for t, _ in self.cells)

    def touches_day(self, day: str) -> bool:
        return any(d == day for _, d in self.cells)

    @staticmethod
    def _damage(bar: dict, kinds: tuple[str, ...], close="c", high="h", low="l", volume="v") -> dict:
        bar = dict(bar)
        if "high_low" in kinds:  # swapped, so high < low
            bar[high], bar[low] = bar[low], max(bar[high], round(bar[low] + 0.01, 4))
        if "neg_volume" in kinds:
            bar[volume] = -abs(bar[volume])
        if "price_spike" in kinds and bar[close] is not None:
            bar[close] = round(bar[close] * PRICE_SPIKE, 4)
            bar[high] = max(bar[high], bar[close])
        if "volume_spike" in kinds:
            bar[volume] = bar[volume] * VOLUME_SPIKE
        if "null_close" in kinds:
            bar[close] = None
        return bar

    def halted(self, ticker: str, day: str) -> bool:
        return "halt" in self.cells.get((ticker, day), ())

    def _expand(self, bars: list[dict], key_of) -> list[dict]:
        out = []
        for bar in bars:
            kinds = self.cells.get(key_of(bar))
            if not kinds:
                out.append(bar)
                continue
            if "halt" in kinds:
                continue
            damaged = self._damage(bar, kinds)
            out.append(damaged)
            if "dup" in kinds:
                out.append(dict(damaged))
        return out

    def apply_grouped(self, bars: list[dict], day: str) -> list[dict]:
        return self._expand(bars, lambda b: (b["T"], day))

    def apply_range(self, bars: list[dict], ticker: str, calendar) -> list[dict]:
        import bisect

        def key_of(b):
            g = bisect.bisect_left(calendar.midnight_ms, b["t"])
            return (ticker, calendar.iso[g])

        return self._expand(bars, key_of)

    def apply_open_close(self, payload: dict, ticker: str, day: str) -> None:
        kinds = self.cells.get((ticker, day))
        if kinds:
            payload.update(self._damage(payload, kinds, close="close", high="high", low="low", volume="volume"))


def _days(text: str, item: str) -> list[str]:
    """The ISO days of 'YYYY-MM-DD' or 'YYYY-MM-DD..YYYY-MM-DD' (both ends included)."""
    first, _, last = text.partition("..")
    try:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
    except ValueError:
        raise ValueError(f"a defect's day is YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD; got '{item}'") from None
    if end < start:
        raise ValueError(f"a defect's span ends before it starts; got '{item}'")
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def parse_late_actions(spec: str | None) -> dict[str, dt.date]:
    """'ZII:2024-05-07,ABC:2024-06-03' -> {ticker: the day its late splits and dividends are first listed}."""
    late: dict[str, dt.date] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        ticker, _, day = item.partition(":")
        try:
            late[ticker] = dt.date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"a late action is TICKER:YYYY-MM-DD (the day its vendor publishes it); got '{item}'") from None
    return late


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    body = json.dumps({"status": "ERROR", "request_id": os.urandom(16).hex(), "error": message}).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # linger 0: close sends RST, the client sees "connection reset by peer"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def fault_middleware(settings: FaultSettings):
    rng = random.Random(settings.seed)

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path == "/stocks":  # the websocket feed has faults of its own (lib.simulator.feed)
            return await handler(request)
        ticker = request.match_info.get("ticker")
        if ticker is not None and ticker in settings.fail_tickers:
            return _error(500, f"Internal error while serving {ticker}.")
        if not settings.kinds or rng.random() >= settings.rate:
            return await handler(request)
        kind = rng.choice(settings.kinds)
        if kind == "429":
            return _error(429, RATE_LIMIT_MESSAGE, headers={"Retry-After": str(settings.retry_after_s)})
        if kind in ("500", "502", "503", "504"):
            return _error(int(kind), "Internal server error." if kind == "500" else "Service unavailable, try again.")
        if kind == "reset":
            _reset(request)
            raise asyncio.CancelledError  # nothing more goes on this connection
        if kind == "slow":
            await asyncio.sleep(settings.slow_ms / 1000.0)
            return await handler(request)
        if kind == "repeat":
            request["repeat_page"] = True
            return await handler(request)
        response = await handler(request)
        body = response.body if isinstance(response.body, bytes) else b""
        half = body[: max(1, len(body) // 2)]
        if kind == "malformed":  # a complete HTTP answer whose JSON is cut short
            return web.Response(body=half, status=response.status, content_type="application/json")
        # truncated: the headers promise the whole body, the connection closes halfway
        stream = web.StreamResponse(status=response.status)
        stream.content_type = "application/json"
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(half)
        _reset(request)
        raise asyncio.CancelledError

    return middleware
