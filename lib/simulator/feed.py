"""The websocket feed of the simulator: Massive's real-time stocks protocol at `/stocks`, minute aggregates (`AM`).

A day's minute bars are derived from the daily bar the REST endpoints serve (as traded), so they add up to it: the
minutes' volumes sum to the day's volume, their highest high is the day's high and their lowest low its low. The
pure function `minute_bars` gives them; `feed_frames` gives every frame the feed sends, faults included
(duplicates, and preliminary bars corrected later). The clock starts at the first subscription and runs
`minutes_per_second` session minutes a second; a frame sent while a client is away is gone for it (no replay).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from functools import lru_cache

import numpy as np
from aiohttp import WSMsgType, web

from lib.simulator.data import NEW_YORK, _market, _normal, _uniform, calendar

FEED_PATH = "/stocks"
SESSION_MINUTES = 390  # 09:30 to 16:00 New York (the simulator's sessions all run the full day)
MINUTE_MS = 60_000
CORRECTION_DELAY_MINUTES = 3  # a preliminary bar's correction comes with the frame of this many minutes later
# Hash streams of the minute quantities, apart from the daily ones of lib.simulator.data.
_S_PATH, _S_WICK_HIGH, _S_WICK_LOW, _S_VOLUME, _S_TRADES, _S_DUPLICATE, _S_CORRECT = range(200, 207)
_COLUMN_STRIDE = 512  # hash columns of session g are g * stride + minute

log = logging.getLogger("lib.simulator.feed")


@dataclasses.dataclass(frozen=True)
class FeedSettings:
    """What the feed plays and how it misbehaves. `drops` are session minutes (0..389) after whose frame every
    connection is cut; `duplicate_rate` of the bars come again in the next frame; `correct_rate` of them are sent
    first as a preliminary bar (lower volume, another close) and corrected CORRECTION_DELAY_MINUTES later;
    `refuse_key` is a key the feed refuses whatever else it accepts."""

    day: dt.date | None = None  # None: the last session on or before the simulator's today
    minutes_per_second: float = 1.0
    drops: tuple[int, ...] = ()
    duplicate_rate: float = 0.0
    correct_rate: float = 0.0
    refuse_key: str | None = None
    start_delay_s: float = 0.0  # the clock starts this long after the first subscription (a warm-up for benchmarks)

    def __post_init__(self):
        if not 0 < self.minutes_per_second <= 100_000:
            raise ValueError(f"the feed's minutes per second must be in (0, 100000], got {self.minutes_per_second}")
        for name in ("duplicate_rate", "correct_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"the feed's {name} must be within [0, 1], got {getattr(self, name)}")
        bad = [m for m in self.drops if not 0 <= m < SESSION_MINUTES]
        if bad:
            raise ValueError(f"feed drops are session minutes 0..{SESSION_MINUTES - 1}, got {bad}")


def feed_session(day: dt.date) -> dt.date:
    """The session the feed plays for `day`: day itself when NYSE trades, else the last session before it."""
    cal = calendar()
    g = cal.last_on_or_before(day)
    if g < 0:
        raise ValueError(f"no NYSE session on or before {day}")
    return cal.sessions[g]


def _open_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, 9, 30, tzinfo=NEW_YORK).timestamp()) * 1000


def _split_integer(total: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of whole numbers proportional to weights that sum exactly to total (the remainder on the largest weight)."""
    share = np.floor(total[:, None] * weights / weights.sum(axis=1, keepdims=True))
    rest = total - share.sum(axis=1)
    share[np.arange(len(total)), weights.argmax(axis=1)] += rest
    return share


@lru_cache(maxsize=4)
def _day_columns(day: dt.date, n: int, seed: int) -> dict:
    """The minute bars of every listed ticker on session `day` as arrays (tickers in ticker order, minutes 0..389)."""
    market = _market(n, seed)
    cal = market.calendar
    g = cal.index_of(day)
    if g is None:
        raise ValueError(f"{day} is not an NYSE session; the feed plays sessions (see feed_session)")
    daily = market.day_columns(g)  # as traded
    ids = daily["ids"]
    keys = market.universe.row_keys[ids][:, None]
    minutes = np.arange(SESSION_MINUTES, dtype=np.int64)
    cols = (g * _COLUMN_STRIDE + minutes)[None, :]
    o, h, lo, c = (daily[k][:, None] for k in ("o", "h", "l", "c"))

    # A Brownian bridge from the open to the close, squeezed into [low, high] so the bounds are reached, not crossed.
    walk = np.concatenate([np.zeros((len(ids), 1)), np.cumsum(_normal(keys, cols, _S_PATH), axis=1)], axis=1)
    steps = np.arange(SESSION_MINUTES + 1)[None, :] / SESSION_MINUTES
    bridge = walk - steps * walk[:, -1:]
    line = o + (c - o) * steps
    spread = np.maximum(bridge.max(axis=1, keepdims=True) - bridge.min(axis=1, keepdims=True), 1e-12)
    deviation = bridge * (h - lo) / spread
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(deviation > 0, (h - line) / deviation, np.where(deviation < 0, (lo - line) / deviation, np.inf))
    deviation *= np.clip(room.min(axis=1, keepdims=True), 0.0, 1.0)
    path = np.clip(np.round(line + deviation, 4), lo, h)
    path[:, 0], path[:, -1] = o[:, 0], c[:, 0]
    opens, closes = path[:, :-1], path[:, 1:]

    tick = (h - lo) / SESSION_MINUTES
    body_high, body_low = np.maximum(opens, closes), np.minimum(opens, closes)
    highs = np.clip(np.round(body_high + 2 * tick * _uniform(keys, cols, _S_WICK_HIGH), 4), body_high, h)
    lows = np.clip(np.round(body_low - 2 * tick * _uniform(keys, cols, _S_WICK_LOW), 4), lo, body_low)
    rows = np.arange(len(ids))
    highs[rows, body_high.argmax(axis=1)] = h[:, 0]  # the day's high and low are some minute's
    lows[rows, body_low.argmin(axis=1)] = lo[:, 0]

    # Volume is heaviest at the open and the close (a U), with noise; whole shares that sum to the day's volume.
    u_shape = 1.0 + 1.5 * ((minutes - (SESSION_MINUTES - 1) / 2) / ((SESSION_MINUTES - 1) / 2)) ** 2
    weights = u_shape[None, :] * (0.5 + _uniform(keys, cols, _S_VOLUME))
    volumes = _split_integer(daily["v"], weights)
    trades = np.maximum(_split_integer(daily["n"].astype(np.float64), weights * (0.8 + 0.4 * _uniform(keys, cols, _S_TRADES))), 1)
    vwaps = np.clip(np.round((highs + lows + closes) / 3.0, 4), lows, highs)
    accumulated = np.cumsum(volumes, axis=1)
    day_vwap = np.round(np.cumsum(volumes * vwaps, axis=1) / np.maximum(accumulated, 1), 4)
    symbols = [market.universe.symbols_on(g)[i] for i in ids.tolist()]
    values = {"o": opens, "h": highs, "l": lows, "c": closes, "vw": vwaps, "a": day_vwap}
    counts = {"v": volumes, "av": accumulated, "z": np.round(volumes / trades)}
    # Python lists, row by row: events are built one by one, and list indexing is what makes that cheap.
    return {
        "symbols": symbols, "keys": keys, "cols": cols, "shape": volumes.shape, "op": o[:, 0].tolist(),
        "start_ms": _open_ms(day),
        **{k: array.tolist() for k, array in values.items()},
        **{k: array.astype(np.int64).tolist() for k, array in counts.items()},
    }  # fmt: skip


def _event(cols: dict, row: int, minute: int) -> dict:
    start = cols["start_ms"] + minute * MINUTE_MS
    return {
        "ev": "AM", "sym": cols["symbols"][row], "v": cols["v"][row][minute], "av": cols["av"][row][minute],
        "op": cols["op"][row], "vw": cols["vw"][row][minute], "o": cols["o"][row][minute], "c": cols["c"][row][minute],
        "h": cols["h"][row][minute], "l": cols["l"][row][minute], "a": cols["a"][row][minute], "z": cols["z"][row][minute],
        "s": start, "e": start + MINUTE_MS, "otc": False,
    }  # fmt: skip


def minute_bars(day: dt.date, n: int = 300, seed: int = 42) -> list[dict]:
    """Every minute bar of session `day` as the feed's final word on it (AM events), by minute then ticker."""
    cols = _day_columns(day, n, seed)
    return [_event(cols, row, minute) for minute in range(SESSION_MINUTES) for row in range(len(cols["symbols"]))]


def preliminary(event: dict) -> dict:
    """The first version of a bar that is corrected later: a tenth of its volume missing, the close moved halfway
    to the far end of the minute's range (still inside it)."""
    missing = max(1, round(event["v"] * 0.1))
    far = event["h"] if event["c"] < (event["h"] + event["l"]) / 2 else event["l"]
    return event | {"v": event["v"] - missing, "av": event["av"] - missing, "c": round((event["c"] + far) / 2, 4)}


def _drawn(cols: dict, stream: int, rate: float) -> np.ndarray:
    if rate <= 0:
        return np.zeros(cols["shape"], dtype=bool)
    return _uniform(cols["keys"], cols["cols"], stream) < rate


@lru_cache(maxsize=4)
def _fault_cells(day: dt.date, n: int, seed: int, duplicate_rate: float, correct_rate: float):
    cols = _day_columns(day, n, seed)
    corrected = _drawn(cols, _S_CORRECT, correct_rate)
    corrected[:, SESSION_MINUTES - CORRECTION_DELAY_MINUTES :] = False  # a correction needs a later frame to ride on
    return _drawn(cols, _S_DUPLICATE, duplicate_rate), corrected


def feed_frame(day: dt.date, minute: int, n: int = 300, seed: int = 42, duplicate_rate: float = 0.0,
               correct_rate: float = 0.0) -> list[dict]:  # fmt: skip
    """The events the feed sends after session minute `minute` ends, in order: that minute's bars (a preliminary
    version for the bars to be corrected), the previous minute's duplicated bars, and the corrections of the bars
    of CORRECTION_DELAY_MINUTES before."""
    cols = _day_columns(day, n, seed)
    duplicated, corrected = _fault_cells(day, n, seed, duplicate_rate, correct_rate)
    duplicated_rows = duplicated[:, minute - 1].nonzero()[0].tolist() if minute >= 1 else []
    corrected_now = corrected[:, minute]
    back = minute - CORRECTION_DELAY_MINUTES
    corrected_rows = corrected[:, back].nonzero()[0].tolist() if back >= 0 else []

    def sent(row: int, m: int) -> dict:
        event = _event(cols, row, m)
        return preliminary(event) if corrected[row, m] else event

    frame = [preliminary(_event(cols, row, minute)) if corrected_now[row] else _event(cols, row, minute)
             for row in range(len(cols["symbols"]))]  # fmt: skip
    frame += [sent(row, minute - 1) for row in duplicated_rows]
    frame += [_event(cols, row, back) for row in corrected_rows]
    return frame


def feed_frames(day: dt.date, n: int = 300, seed: int = 42, duplicate_rate: float = 0.0,
                correct_rate: float = 0.0) -> list[list[dict]]:  # fmt: skip
    """Every frame of the day, one per session minute: what a client subscribed to AM.* from the start receives."""
    return [feed_frame(day, m, n, seed, duplicate_rate, correct_rate) for m in range(SESSION_MINUTES)]


# --------------------------------------------------------------------------------------------------
# The server side
# --------------------------------------------------------------------------------------------------


def _status(status: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": status, "message": message}], separators=(",", ":"))


@dataclasses.dataclass(eq=False)
class _Client:
    request: web.Request
    ws: web.WebSocketResponse
    authenticated: bool = False
    everything: bool = False  # AM.*
    symbols: set = dataclasses.field(default_factory=set)

    def wants(self, symbol: str) -> bool:
        return self.everything or symbol in self.symbols


class Feed:
    """The `/stocks` websocket handler and the clock that plays the day to every subscribed client."""

    def __init__(self, settings: FeedSettings, tickers: int, seed: int, api_key: str | None, today):
        self.settings = settings
        self.tickers, self.seed = tickers, seed
        self.api_key = api_key  # only this key when set; otherwise any non-empty key
        self.day = feed_session(settings.day or today())
        self.clients: set[_Client] = set()
        self._clock: asyncio.Task | None = None

    def _accepts(self, key) -> bool:
        if not isinstance(key, str) or not key:
            return False
        if self.settings.refuse_key is not None and key == self.settings.refuse_key:
            return False
        return self.api_key is None or key == self.api_key

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        client = _Client(request, ws)
        self.clients.add(client)
        try:
            await ws.send_str(_status("connected", "Connected Successfully"))
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                if not await self._action(client, message.data):
                    break
        finally:
            self.clients.discard(client)
        return ws

    async def _action(self, client: _Client, text: str) -> bool:
        """Answer one client message; False when the connection is to close."""
        try:
            action = json.loads(text)
        except ValueError:
            await client.ws.send_str(_status("error", "Could not parse the message: expected JSON"))
            return True
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            await client.ws.send_str(_status("error", "Expected an object with an action"))
            return True
        name, params = action["action"], action.get("params")
        if name == "auth":
            if not self._accepts(params):  # the key is never logged
                await client.ws.send_str(_status("auth_failed", "authentication failed"))
                await client.ws.close()
                return False
            client.authenticated = True
            await client.ws.send_str(_status("auth_success", "authenticated"))
            return True
        if not client.authenticated:
            await client.ws.send_str(_status("error", "not authorized"))
            return True
        if name not in ("subscribe", "unsubscribe") or not isinstance(params, str):
            await client.ws.send_str(_status("error", f"unknown action {name!r}"))
            return True
        topics = [t.strip() for t in params.split(",") if t.strip()]
        answers = []
        for topic in topics:
            channel, _, symbol = topic.partition(".")
            if channel == "AM" and symbol:
                if symbol == "*":
                    client.everything = name == "subscribe"
                elif name == "subscribe":
                    client.symbols.add(symbol)
                else:
                    client.symbols.discard(symbol)
            verb = "subscribed to" if name == "subscribe" else "unsubscribed to"
            answers.append({"ev": "status", "status": "success", "message": f"{verb}: {topic}"})
        await client.ws.send_str(json.dumps(answers, separators=(",", ":")))
        if name == "subscribe" and self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(self._play())
        return True

    async def _play(self) -> None:
        """Send each minute's frame when the minute ends on the accelerated clock; cut connections after `drops`."""
        s = self.settings
        loop = asyncio.get_running_loop()
        await asyncio.sleep(s.start_delay_s)
        log.warning("feed: playing %s, %g session minutes a second", self.day, s.minutes_per_second)
        started = loop.time()
        for minute in range(SESSION_MINUTES):
            await asyncio.sleep(max(0.0, started + (minute + 1) / s.minutes_per_second - loop.time()))
            frame = feed_frame(self.day, minute, self.tickers, self.seed, s.duplicate_rate, s.correct_rate)
            whole = json.dumps(frame, separators=(",", ":"))
            for client in list(self.clients):
                if not client.authenticated or not (client.everything or client.symbols) or client.ws.closed:
                    continue
                text = whole if client.everything else json.dumps([e for e in frame if client.wants(e["sym"])])
                if text == "[]":
                    continue
                try:
                    await client.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    self.clients.discard(client)
            if minute in s.drops:
                from lib.simulator.faults import _reset

                for client in list(self.clients):
                    _reset(client.request)  # a dropped connection: no close frame, the client sees a reset
                    self.clients.discard(client)
        log.warning("feed: the day %s is over", self.day)
