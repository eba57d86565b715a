"""Deterministic synthetic market data: a ticker universe and daily bars on NYSE sessions, cheap to read at random.

Every random number is a counter-based hash of (seed, ticker, session or month, stream), so any cell can be
computed alone. Monthly log-price levels are drawn once for all tickers (a geometric random walk between
reflecting bounds); a month's daily closes are a Brownian bridge between two levels, computed for a whole
block of rows (all tickers in one month, or one ticker in many months) with the same row-wise arithmetic,
so the grouped, range and open-close endpoints serve identical numbers.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from lib.trading_days import FIRST_SESSION, today_new_york, trading_days

NEW_YORK = ZoneInfo("America/New_York")
MAX_DAYS_IN_MONTH = 23  # NYSE never holds more than 23 sessions in a calendar month
TRADING_DAYS_PER_YEAR = 252.0
LOW_PRICE, HIGH_PRICE = 1.5, 3000.0
LAST_LATE_LISTING = dt.date(2024, 12, 31)  # reflecting bounds of the monthly levels keep prices plausible

# Hash streams: one per random quantity, so adding a quantity never changes the others.
_S_PARAMS, _S_MONTH, _S_STEP, _S_GAP, _S_HIGH, _S_LOW, _S_VOLUME, _S_VWAP, _S_TRADES, _S_AFTER, _S_PRE = range(11)
_FIELDS = ("o", "h", "l", "c", "v", "vw", "n", "ah", "pm")

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K_ROW = np.uint64(0x9E3779B97F4A7C15)
_K_COL = np.uint64(0xD1B54A32D192ED03)
_K_STREAM = np.uint64(0x8CB92BA72F3D8DD7)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective avalanche on uint64 (wrapping arithmetic is intended)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _row_keys(seed: int, tickers: np.ndarray) -> np.ndarray:
    seed_key = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return _mix(seed_key + tickers.astype(np.uint64) * _K_ROW)


def _bits(row_keys: np.ndarray, cols: np.ndarray, stream: int) -> np.ndarray:
    stream_key = np.uint64(((stream + 1) * int(_K_STREAM)) & 0xFFFFFFFFFFFFFFFF)
    return _mix(row_keys + cols.astype(np.uint64) * _K_COL + stream_key)


def _uniform(row_keys, cols, stream) -> np.ndarray:
    """Uniform on (0, 1)."""
    return ((_bits(row_keys, cols, stream) >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _normal(row_keys, cols, stream) -> np.ndarray:
    """Standard normal approximated by four 16-bit uniforms (Irwin-Hall): bounded tails at +-3.46, no wild jumps."""
    bits = np.ascontiguousarray(_bits(row_keys, cols, stream))
    # The four 16-bit lanes of each word, summed exactly as integers (so byte order cannot matter).
    lanes = bits.view(np.uint16).reshape(*bits.shape, 4)
    total = (lanes[..., 0].astype(np.float64) + lanes[..., 1]) + (lanes[..., 2].astype(np.float64) + lanes[..., 3])
    return ((total + 2.0) / 65536.0 - 2.0) * math.sqrt(3.0)


# --------------------------------------------------------------------------------------------------
# Calendar tables
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    sessions: tuple[dt.date, ...]  # every NYSE session from 2000-01-03 through the calendar's end
    session_month: np.ndarray  # month number (months since 2000-01) of each session
    session_slot: np.ndarray  # position of each session inside its month
    month_first: np.ndarray  # global index of each month's first session
    month_len: np.ndarray  # sessions in each month
    midnight_ms: np.ndarray  # 00:00 America/New_York of each session, epoch ms
    close_ms: np.ndarray  # 16:00 America/New_York of each session, epoch ms
    iso: tuple[str, ...]

    def index_of(self, day: dt.date) -> int | None:
        i = bisect.bisect_left(self.sessions, day)
        return i if i < len(self.sessions) and self.sessions[i] == day else None

    def first_on_or_after(self, day: dt.date) -> int:
        return bisect.bisect_left(self.sessions, day)

    def last_on_or_before(self, day: dt.date) -> int:
        """-1 when no session is on or before day."""
        return bisect.bisect_right(self.sessions, day) - 1

    @property
    def months(self) -> int:
        return len(self.month_len)


def _epoch_ms(day: dt.date, hour: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=NEW_YORK).timestamp()) * 1000


@lru_cache(maxsize=1)
def calendar() -> Calendar:
    # The exchange calendar reaches about a year ahead; whole months only, so month lengths never change.
    sessions = trading_days(FIRST_SESSION, dt.date(2200, 1, 1))
    last = sessions[-1]
    month_of = [(d.year - 2000) * 12 + d.month - 1 for d in sessions]
    if (last + dt.timedelta(days=7)).month == last.month:  # the calendar ends mid-month: drop that month
        cut = bisect.bisect_left(month_of, month_of[-1])
        sessions, month_of = sessions[:cut], month_of[:cut]
    session_month = np.asarray(month_of, dtype=np.int64)
    months = int(session_month[-1]) + 1
    month_len = np.bincount(session_month, minlength=months).astype(np.int64)
    month_first = np.concatenate([[0], np.cumsum(month_len)[:-1]]).astype(np.int64)
    session_slot = np.arange(len(sessions), dtype=np.int64) - month_first[session_month]
    return Calendar(
        sessions=tuple(sessions),
        session_month=session_month,
        session_slot=session_slot,
        month_first=month_first,
        month_len=month_len,
        midnight_ms=np.array([_epoch_ms(d, 0) for d in sessions], dtype=np.int64),
        close_ms=np.array([_epoch_ms(d, 16) for d in sessions], dtype=np.int64),
        iso=tuple(d.isoformat() for d in sessions),
    )


# --------------------------------------------------------------------------------------------------
# The universe
# --------------------------------------------------------------------------------------------------

_NAME_HEADS = (
    "Apex Arbor Atlas Aurora Beacon Birch Blue Bright Cardinal Cedar Cobalt Crescent Crown Delta Eagle Echo "
    "Ember Falcon Frontier Garnet Glacier Granite Harbor Hawk Horizon Iron Juniper Keystone Lakeshore Liberty "
    "Lumen Maple Meridian Mesa Monarch Northstar Oak Orion Pacific Peak Pinnacle Pioneer Prairie Quantum Redwood "
    "Ridge River Sable Sage Sequoia Sierra Silver Solstice Spruce Sterling Summit Titan Union Vanguard Vertex "
    "Willow Zenith"
).split()
_NAME_TAILS = (
    "Holdings Inc", "Corp", "Technologies Inc", "Group Inc", "Therapeutics Inc", "Bancorp", "Energy Corp",
    "Industries Inc", "Systems Inc", "Pharmaceuticals Inc", "Financial Corp", "Brands Inc", "Materials Inc",
    "Networks Inc", "Realty Trust", "Semiconductor Corp", "Logistics Inc", "Foods Co", "Health Inc", "Software Inc",
)
_ETF_THEMES = (
    "US Dividend", "Total Market", "Small Cap Value", "Treasury Bond", "Emerging Markets", "Technology Sector",
    "Clean Energy", "Short Duration Income", "Momentum Factor", "Healthcare Select",
)
_FIGI_CHARS = "BCDFGHJKLMNPQRSTVWXYZ0123456789"
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


@dataclass(frozen=True)
class Universe:
    """Per-ticker arrays in generation order (index = ticker id), plus the served records in ticker order."""

    seed: int
    symbols: tuple[str, ...]  # by id
    ids_by_symbol: dict[str, int]
    sorted_ids: np.ndarray  # ids in ticker order
    records: tuple[dict, ...]  # served /v3/reference/tickers records in ticker order
    list_dates: tuple[dt.date, ...]  # by id
    list_session: np.ndarray  # by id: index of the first session with a bar
    row_keys: np.ndarray
    log_levels: np.ndarray  # (tickers, months + 1): log close at the end of month m-1 in column m
    sigma: np.ndarray
    base_volume: np.ndarray
    trade_size: np.ndarray


def _symbols(n: int, seed: int) -> list[str]:
    """The first n distinct symbols drawn from a seeded stream: universe(30) is a subset of universe(300)."""
    rng = np.random.default_rng([seed, 0x5EED])
    seen: dict[str, None] = {}
    while len(seen) < n:
        lengths = rng.choice([1, 2, 3, 4, 5], p=[0.01, 0.06, 0.38, 0.5, 0.05], size=max(64, 2 * (n - len(seen))))
        letters = rng.integers(0, 26, size=(len(lengths), 5))
        for length, row in zip(lengths, letters, strict=True):
            symbol = "".join(_LETTERS[row[:length]])
            if symbol not in seen:
                seen[symbol] = None
                if len(seen) == n:
                    break
    return list(seen)


def _figi(bits: int) -> str:
    chars = []
    for _ in range(8):
        chars.append(_FIGI_CHARS[bits % len(_FIGI_CHARS)])
        bits //= len(_FIGI_CHARS)
    return "BBG" + "".join(chars) + str(bits % 10)


@lru_cache(maxsize=8)
def build_universe(n: int, seed: int) -> Universe:
    if n < 1:
        raise ValueError(f"the universe needs at least one ticker, got {n}")
    cal = calendar()
    symbols = _symbols(n, seed)
    ids = np.arange(n, dtype=np.int64)
    keys = _row_keys(seed, ids)
    u = [_uniform(keys, np.zeros(n, dtype=np.int64), _S_PARAMS * 100 + p) for p in range(12)]
    bits = [_bits(keys, np.full(n, p, dtype=np.int64), _S_PARAMS * 100 + 50) for p in range(3)]

    kind = np.where(u[0] < 0.80, "CS", np.where(u[0] < 0.92, "ETF", np.where(u[0] < 0.97, "ADRC", "PFD")))
    drift = -0.10 + 0.35 * u[1]
    sigma = 0.15 + 0.45 * u[2]
    sigma = np.where(kind == "ETF", 0.15 + 0.15 * u[2], sigma)  # funds are calmer than single names
    start_price = np.clip(np.exp(math.log(30.0) + 0.9 * _normal(keys, np.zeros(n, dtype=np.int64), 60)), 3.0, 400.0)
    base_volume = np.clip(np.exp(math.log(1.2e6) + 1.2 * _normal(keys, np.zeros(n, dtype=np.int64), 61)), 2e4, 8e7)
    trade_size = 80.0 + 220.0 * u[3]

    # About 10 % list after the first session (uniformly through LAST_LATE_LISTING, a fixed day so that the
    # data never shifts as time passes); the rest listed before 2000.
    last_listing = cal.last_on_or_before(LAST_LATE_LISTING)
    late = u[4] < 0.10
    late_session = 1 + (u[5] * max(1, last_listing - 1)).astype(np.int64)
    list_session = np.where(late, late_session, 0)
    early_days = (u[5] * (dt.date(1999, 12, 1) - dt.date(1975, 1, 1)).days).astype(np.int64)
    list_dates = tuple(
        cal.sessions[int(list_session[i])] if late[i] else dt.date(1975, 1, 1) + dt.timedelta(days=int(early_days[i]))
        for i in range(n)
    )

    # Monthly log levels: a geometric random walk with per-ticker drift and volatility, folded into the bounds.
    months = cal.months
    month_cols = np.arange(months, dtype=np.int64)
    shocks = _normal(np.repeat(keys, months), np.tile(month_cols, n), _S_MONTH).reshape(n, months)
    years = cal.month_len.astype(np.float64) / TRADING_DAYS_PER_YEAR
    steps = (drift - sigma**2 / 2)[:, None] * years[None, :] + sigma[:, None] * np.sqrt(years)[None, :] * shocks
    lo, hi = math.log(LOW_PRICE), math.log(HIGH_PRICE)
    levels = np.empty((n, months + 1))
    levels[:, 0] = np.log(start_price)
    for m in range(months):
        x = levels[:, m] + steps[:, m]
        x = np.where(x < lo, 2 * lo - x, x)
        levels[:, m + 1] = np.where(x > hi, 2 * hi - x, x)

    records_by_id = []
    for i, symbol in enumerate(symbols):
        k = str(kind[i])
        head = _NAME_HEADS[int(u[6][i] * len(_NAME_HEADS))]
        if k == "ETF":
            name = f"{head} {_ETF_THEMES[int(u[7][i] * len(_ETF_THEMES))]} ETF"
            exchange = "ARCX" if u[8][i] < 0.7 else ("BATS" if u[8][i] < 0.85 else "XNAS")
        else:
            name = f"{head} {_NAME_TAILS[int(u[7][i] * len(_NAME_TAILS))]}"
            if k == "ADRC":
                name += " ADR"
            elif k == "PFD":
                name += " Preferred Series A"
            exchange = "XNYS" if u[8][i] < 0.42 else ("XNAS" if u[8][i] < 0.95 else "XASE")
        updated = max(list_dates[i], dt.date(2024, 1, 2))
        record: dict = {
            "ticker": symbol,
            "name": name,
            "market": "stocks",
            "locale": "us",
            "primary_exchange": exchange,
            "type": k,
            "active": True,
            "currency_name": "usd",
        }
        # Like real reference data, some records lack a CIK or FIGIs (the keys are then absent).
        if u[9][i] < (0.6 if k == "ETF" else 0.95):
            record["cik"] = f"{int(bits[0][i] % np.uint64(2_000_000)):010d}"
        if u[10][i] < 0.92:
            record["composite_figi"] = _figi(int(bits[1][i]))
            record["share_class_figi"] = _figi(int(bits[2][i]))
        record["last_updated_utc"] = f"{updated.isoformat()}T00:00:00Z"
        records_by_id.append(record)

    sorted_ids = np.array(sorted(range(n), key=symbols.__getitem__), dtype=np.int64)
    return Universe(
        seed=seed,
        symbols=tuple(symbols),
        ids_by_symbol={s: i for i, s in enumerate(symbols)},
        sorted_ids=sorted_ids,
        records=tuple(records_by_id[i] for i in sorted_ids),
        list_dates=list_dates,
        list_session=list_session.astype(np.int64),
        row_keys=keys,
        log_levels=levels,
        sigma=sigma,
        base_volume=base_volume,
        trade_size=trade_size,
    )


# --------------------------------------------------------------------------------------------------
# Bars
# --------------------------------------------------------------------------------------------------


def compute_rows(uni: Universe, ids: np.ndarray, months: np.ndarray) -> dict[str, np.ndarray]:
    """Daily bars for rows of (ticker id, month): arrays of shape (rows, 23), slot j = the month's j-th session.

    Also returns `valid` (a bar exists: the session is in the month and on or after the listing) and `g`
    (global session index). Every operation is row-wise, so a cell's value never depends on its neighbours rows.
    """
    cal = calendar()
    ids = np.asarray(ids, dtype=np.int64)
    months = np.asarray(months, dtype=np.int64)
    rows = len(ids)
    slots = np.arange(MAX_DAYS_IN_MONTH, dtype=np.int64)[None, :]
    length = cal.month_len[months][:, None]
    g = cal.month_first[months][:, None] + slots
    in_month = slots < length
    g = np.where(in_month, g, 0)
    valid = in_month & (g >= uni.list_session[ids][:, None])

    keys = np.broadcast_to(uni.row_keys[ids][:, None], (rows, MAX_DAYS_IN_MONTH))
    sigma_d = (uni.sigma[ids] / math.sqrt(TRADING_DAYS_PER_YEAR))[:, None]
    start = uni.log_levels[ids, months][:, None]
    end = uni.log_levels[ids, months + 1][:, None]

    step_z = _normal(keys, g, _S_STEP)
    walk = np.cumsum(np.where(in_month, step_z * sigma_d, 0.0), axis=1)
    frac = (slots + 1) / length
    walk_end = np.take_along_axis(walk, length - 1, axis=1)
    log_close = start + frac * (end - start) + walk - frac * walk_end
    prev_log_close = np.concatenate([start, log_close[:, :-1]], axis=1)

    close = np.exp(log_close)
    open_ = np.exp(prev_log_close + 0.3 * sigma_d * _normal(keys, g, _S_GAP))
    top = np.maximum(open_, close) * np.exp(0.5 * sigma_d * np.abs(_normal(keys, g, _S_HIGH)))
    bottom = np.minimum(open_, close) * np.exp(-0.5 * sigma_d * np.abs(_normal(keys, g, _S_LOW)))

    o = np.maximum(np.round(open_, 4), 0.01)
    c = np.maximum(np.round(close, 4), 0.01)
    h = np.maximum(np.maximum(np.round(top, 4), o), c)
    low = np.minimum(np.minimum(np.maximum(np.round(bottom, 4), 0.0001), o), c)
    vw = np.round(low + (h - low) * (0.25 + 0.5 * _uniform(keys, g, _S_VWAP)), 4)
    vw = np.minimum(np.maximum(vw, low), h)

    move = np.abs(log_close - prev_log_close) / sigma_d
    volume = uni.base_volume[ids][:, None] * np.exp(0.35 * _normal(keys, g, _S_VOLUME)) * (0.7 + 0.3 * move)
    v = np.maximum(np.round(volume), 100.0)
    n = np.maximum(np.round(v / uni.trade_size[ids][:, None] * np.exp(0.15 * _normal(keys, g, _S_TRADES))), 1.0)
    after = np.round(c * np.exp(0.1 * sigma_d * _normal(keys, g, _S_AFTER)), 4)
    pre = np.round(o * np.exp(0.1 * sigma_d * _normal(keys, g, _S_PRE)), 4)
    return {"o": o, "h": h, "l": low, "c": c, "v": v, "vw": vw, "n": n.astype(np.int64), "ah": after, "pm": pre,
            "valid": valid, "g": g}


class MonthBlocks:
    """LRU of whole-universe month blocks (the grouped and open-close endpoints read a day across tickers)."""

    def __init__(self, uni: Universe, budget_bytes: int = 384 * 2**20):
        self.uni = uni
        n = len(uni.symbols)
        block_bytes = n * MAX_DAYS_IN_MONTH * 8 * (len(_FIELDS) + 2)
        self.capacity = max(4, min(calendar().months, budget_bytes // block_bytes))
        self._blocks: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._all_ids = np.arange(n, dtype=np.int64)

    def month(self, m: int) -> dict[str, np.ndarray]:
        block = self._blocks.get(m)
        if block is not None:
            self._blocks.move_to_end(m)
            return block
        block = compute_rows(self.uni, self._all_ids, np.full(len(self._all_ids), m, dtype=np.int64))
        self._blocks[m] = block
        if len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return block


def _bar_dict(block: dict[str, np.ndarray], row: int, slot: int) -> dict:
    return {
        "v": float(block["v"][row, slot]),
        "vw": float(block["vw"][row, slot]),
        "o": float(block["o"][row, slot]),
        "c": float(block["c"][row, slot]),
        "h": float(block["h"][row, slot]),
        "l": float(block["l"][row, slot]),
        "n": int(block["n"][row, slot]),
    }


class Market:
    """Random access to one universe's bars: a day across tickers, a ticker across days, one cell."""

    def __init__(self, n: int, seed: int, budget_bytes: int = 384 * 2**20):
        self.universe = build_universe(n, seed)
        self.calendar = calendar()
        self.blocks = MonthBlocks(self.universe, budget_bytes)

    def session_index(self, day: dt.date, today: dt.date) -> int | None:
        """The session index of day when it is a session not after today, else None."""
        if day > today:
            return None
        return self.calendar.index_of(day)

    def day_columns(self, g: int) -> dict[str, np.ndarray]:
        """Grouped bars of session g as columns in ticker order (ids, v, vw, o, c, h, l, t, n); unlisted tickers absent."""
        cal = self.calendar
        block = self.blocks.month(int(cal.session_month[g]))
        slot = int(cal.session_slot[g])
        ids = self.universe.sorted_ids
        ids = ids[block["valid"][ids, slot]]
        columns = {k: block[k][ids, slot] for k in ("v", "vw", "o", "c", "h", "l", "n")}
        columns["t"] = np.full(len(ids), int(cal.close_ms[g]), dtype=np.int64)
        columns["ids"] = ids
        return columns

    def day_bars(self, g: int) -> list[dict]:
        """Grouped shape (t = 16:00 New York), in ticker order; tickers not yet listed are absent."""
        columns = self.day_columns(g)
        symbols = self.universe.symbols
        return [{"T": symbols[i], **bar} for i, bar in zip(columns["ids"].tolist(), columns_to_bars(columns), strict=True)]

    def cell(self, tid: int, g: int) -> dict | None:
        """One bar with afterHours/preMarket, or None before the listing."""
        cal = self.calendar
        block = self.blocks.month(int(cal.session_month[g]))
        slot = int(cal.session_slot[g])
        if not block["valid"][tid, slot]:
            return None
        bar = _bar_dict(block, tid, slot)
        bar["ah"] = float(block["ah"][tid, slot])
        bar["pm"] = float(block["pm"][tid, slot])
        return bar

    def ticker_columns(self, tid: int, first_g: int, last_g: int) -> dict[str, np.ndarray]:
        """Range bars as columns v, vw, o, c, h, l, t (00:00 New York), n, g for sessions first_g..last_g, ascending."""
        cal = self.calendar
        first_g = max(first_g, int(self.universe.list_session[tid]))
        if last_g < first_g:
            empty = np.zeros(0)
            return {k: empty for k in ("v", "vw", "o", "c", "h", "l")} | {
                k: np.zeros(0, dtype=np.int64) for k in ("t", "n", "g")
            }
        m0, m1 = int(cal.session_month[first_g]), int(cal.session_month[last_g])
        months = np.arange(m0, m1 + 1, dtype=np.int64)
        rows = compute_rows(self.universe, np.full(len(months), tid, dtype=np.int64), months)
        keep = rows["valid"] & (rows["g"] >= first_g) & (rows["g"] <= last_g)
        columns = {k: rows[k][keep] for k in ("v", "vw", "o", "c", "h", "l", "n", "g")}
        columns["t"] = cal.midnight_ms[columns["g"]]
        return columns

    def ticker_bars(self, tid: int, first_g: int, last_g: int) -> list[dict]:
        """Range shape (t = 00:00 New York), sessions first_g..last_g inclusive, ascending."""
        return columns_to_bars(self.ticker_columns(tid, first_g, last_g))


RANGE_KEYS = ("v", "vw", "o", "c", "h", "l", "t", "n")


def columns_to_bars(columns: dict[str, np.ndarray]) -> list[dict]:
    lists = [columns[k].tolist() for k in RANGE_KEYS]
    return [dict(zip(RANGE_KEYS, values, strict=True)) for values in zip(*lists, strict=True)]


# --------------------------------------------------------------------------------------------------
# Pure functions for tests and other modules
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _market(n: int, seed: int) -> Market:
    return Market(n, seed, budget_bytes=64 * 2**20)


def universe(n: int = 300, seed: int = 42) -> list[dict]:
    """The /v3/reference/tickers records the simulator serves, in ticker order."""
    return [dict(r) for r in build_universe(n, seed).records]


def listing_dates(n: int = 300, seed: int = 42) -> dict[str, dt.date]:
    """Each ticker's list date (before 2000 for most; no bar and no reference record before it)."""
    uni = build_universe(n, seed)
    return {uni.symbols[i]: uni.list_dates[i] for i in range(n)}


def bars_for_day(day: dt.date, n: int = 300, seed: int = 42) -> list[dict]:
    """The grouped-daily results for day (empty on non-sessions and after today)."""
    market = _market(n, seed)
    g = market.session_index(day, today_new_york())
    return [] if g is None else market.day_bars(g)


def bar(ticker: str, day: dt.date, n: int = 300, seed: int = 42) -> dict | None:
    """The range-shaped bar of ticker on day (t = 00:00 New York), or None when there is none."""
    market = _market(n, seed)
    tid = market.universe.ids_by_symbol.get(ticker)
    g = market.session_index(day, today_new_york())
    if tid is None or g is None:
        return None
    cell = market.cell(tid, g)
    if cell is None:
        return None
    return {k: cell[k] for k in ("v", "vw", "o", "c", "h", "l")} | {"t": int(market.calendar.midnight_ms[g]), "n": cell["n"]}
