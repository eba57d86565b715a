"""Deterministic synthetic market data: a ticker universe and daily bars on NYSE sessions, cheap to read at random.

Every random number is a counter-based hash of (seed, ticker, session or month, stream), so any cell can be
computed alone. Monthly log-price levels are drawn once for all tickers (a geometric random walk between
reflecting bounds); a month's daily closes are a Brownian bridge between two levels, computed for a whole
block of rows (all tickers in one month, or one ticker in many months) with the same row-wise arithmetic,
so the grouped, range and open-close endpoints serve identical numbers.

Bars and actions belong to securities; a security trades under one ticker at a time. Universes of IDENTITY_CAST_FROM
tickers or more add a small cast whose tickers change hands (a rename, a ticker reused after a delisting), and every
endpoint serves a session's bars under the ticker held that session.
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

from lib.core.trading_days import FIRST_SESSION, today_new_york, trading_days

NEW_YORK = ZoneInfo("America/New_York")
MAX_DAYS_IN_MONTH = 23  # NYSE never holds more than 23 sessions in a calendar month
TRADING_DAYS_PER_YEAR = 252.0
LOW_PRICE, HIGH_PRICE = 1.5, 3000.0
LAST_LATE_LISTING = dt.date(2024, 12, 31)  # reflecting bounds of the monthly levels keep prices plausible

# Hash streams: one per random quantity, so adding a quantity never changes the others.
(_S_PARAMS, _S_MONTH, _S_STEP, _S_GAP, _S_HIGH, _S_LOW, _S_VOLUME, _S_VWAP, _S_TRADES, _S_AFTER, _S_PRE, _S_ACTION,
 _S_IDENTITY) = range(13)
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
# Corporate actions and delistings
# --------------------------------------------------------------------------------------------------

# (split_from, split_to): 2-for-1, 3-for-2, 4-for-1 and a 1-for-10 reverse split.
SPLIT_RATIOS = ((1, 2), (2, 3), (1, 4), (10, 1))
NEVER = np.iinfo(np.int64).max // 2  # the end session of a security that never delists
ACTIONS_FROM = dt.date(2001, 1, 2)  # fixed bounds, so the actions never shift as time passes
ACTIONS_THROUGH = dt.date(2027, 12, 31)
DELISTINGS_FROM, DELISTINGS_THROUGH = dt.date(2010, 1, 4), dt.date(2024, 12, 31)
SPLIT_NOTICE_DAYS = 30  # a split is announced this many calendar days before its execution date
T_PLUS_ONE = dt.date(2024, 5, 28)  # from this ex-date on the record date is the ex-date itself


def splits_shares(tid: int) -> bool:
    """One ticker in eight splits (by id, so every universe of four tickers or more has one)."""
    return tid % 8 == 3


def pays_dividends(tid: int) -> bool:
    """One ticker in four pays a quarterly cash dividend."""
    return tid % 4 == 1


def delists(tid: int) -> bool:
    """One ticker in forty delists (ids 31, 71, ...: universes of 32 tickers or more have one)."""
    return tid % 40 == 31


@dataclass(frozen=True)
class Split:
    tid: int
    g: int  # the execution date's session index
    split_from: int
    split_to: int
    action_id: str


@dataclass(frozen=True)
class Dividend:
    tid: int
    g: int  # the ex-dividend date's session index
    yield_: float  # the fraction of the previous close paid out (the as-traded prices drop by it)
    action_id: str


def _action_id(bits: int) -> str:
    return f"E{bits:016x}{(bits * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}"


def _first_session_after_holiday(cal: Calendar, g: int) -> int:
    """The first session on or after g that follows a weekday without a session (a holiday)."""
    sessions = cal.sessions
    for i in range(max(g, 1), len(sessions)):
        gap = (sessions[i] - sessions[i - 1]).days
        if gap > 1 and not (sessions[i].weekday() == 0 and gap == 3):
            return i
    return g


@dataclass(frozen=True)
class Actions:
    """The universe's splits and dividends (in (tid, g) order), delistings, and the factors that turn them into bars."""

    splits: tuple[Split, ...]
    dividends: tuple[Dividend, ...]
    delist_session: dict[int, int]  # tid -> the first session without a bar (the delisting day)
    # tid -> (ex sessions ascending, traded price factor from each on, traded volume factor from each on)
    steps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    _end: np.ndarray  # by tid: the first session without a bar (a huge number when never delisted)

    def end_session(self, ids: np.ndarray) -> np.ndarray:
        return self._end[ids]

    def traded_factors(self, ids: np.ndarray, g: np.ndarray):
        """(price factor, volume factor) arrays shaped like g for rows of ids, or (None, None) when no row acts."""
        ids = np.asarray(ids)
        order = np.argsort(ids, kind="stable")  # rows grouped by ticker: each acting ticker's rows at once
        tids, starts = np.unique(ids[order], return_index=True)
        ends = np.append(starts[1:], len(ids))
        groups = [(tid, order[a:b]) for tid, a, b in zip(tids.tolist(), starts, ends, strict=True) if tid in self.steps]
        if not groups:
            return None, None
        price = np.ones(g.shape)
        volume = np.ones(g.shape)
        for tid, rows in groups:
            ex, price_steps, volume_steps = self.steps[tid]
            at = np.searchsorted(ex, g[rows], side="right") - 1
            price[rows] = np.where(at >= 0, price_steps[np.maximum(at, 0)], 1.0)
            volume[rows] = np.where(at >= 0, volume_steps[np.maximum(at, 0)], 1.0)
        return price, volume

    def split_adjustment(self, tid: int, g: np.ndarray, as_of_g: int) -> np.ndarray:
        """S for bars of tid on sessions g, as the API's adjusted=true applies it on day as_of_g: the product of
        split_from / split_to over the splits executed after each bar and on or before as_of_g."""
        factor = np.ones(len(g))
        for split in self.splits_of(tid):
            if split.g <= as_of_g:
                factor = np.where(np.asarray(g) < split.g, factor * (split.split_from / split.split_to), factor)
        return factor

    def splits_of(self, tid: int) -> list[Split]:
        return self._splits_by_tid.get(tid, [])

    @property
    def _splits_by_tid(self) -> dict[int, list[Split]]:
        cached = self.__dict__.get("_by_tid")
        if cached is None:
            cached = {}
            for split in self.splits:
                cached.setdefault(split.tid, []).append(split)
            object.__setattr__(self, "_by_tid", cached)
        return cached


def build_actions(keys: np.ndarray, list_session: np.ndarray, cast_delistings: dict[int, int] | None = None,
                  size: int | None = None) -> Actions:
    """The deterministic actions of a universe: splits in separate bands of 2001..2027 (alternately on a month's first
    session and on the first session after a holiday), dividends every third month, delistings in 2010..2024.

    keys and list_session are the base securities'; the identity cast (ids from len(keys) to size) neither splits nor
    pays, and delists only on the sessions of cast_delistings (id -> session), so its events stay where it puts them."""
    cal = calendar()
    n = len(keys)
    last = len(cal.sessions) - 1
    first_g = cal.first_on_or_after(ACTIONS_FROM)
    last_g = min(cal.last_on_or_before(ACTIONS_THROUGH), last)
    splits, dividends, delist = [], [], {}
    params = (0, 1, 2, 3, 4, 10, 11, 12, 20, 21, 22)
    ids = np.arange(n, dtype=np.int64)
    drawn = {p: _uniform(keys, np.full(n, p, dtype=np.int64), _S_ACTION) for p in params}
    id_bits = {p: _bits(keys, np.full(n, p, dtype=np.int64), _S_ACTION) for p in (30, 31, 32)}
    payers = ids[ids % 4 == 1]
    months = np.arange(cal.months, dtype=np.int64)
    month_u = _uniform(np.repeat(keys[payers], cal.months), np.tile(1000 + months, len(payers)), _S_ACTION)
    month_u = month_u.reshape(len(payers), cal.months)
    month_bits = _bits(np.repeat(keys[payers], cal.months), np.tile(5000 + months, len(payers)), _S_ACTION)
    month_bits = month_bits.reshape(len(payers), cal.months)
    payer_row = {int(t): i for i, t in enumerate(payers)}
    for tid in range(n):

        def u(p: int, tid=tid) -> float:
            return float(drawn[p][tid])

        def bits(p: int, tid=tid) -> int:
            if p >= 5000:
                return int(month_bits[payer_row[tid], p - 5000])
            return int(id_bits[p][tid])

        start = max(first_g, int(list_session[tid]) + 120)
        if delists(tid):
            low = max(cal.first_on_or_after(DELISTINGS_FROM), int(list_session[tid]) + 250)
            high = cal.last_on_or_before(DELISTINGS_THROUGH)
            if low < high:
                delist[tid] = low + int(u(0) * (high - low))
        end = min(last_g, delist.get(tid, last_g + 1) - 1)
        if splits_shares(tid) and start < end:
            count = 2 + (u(1) < 0.5)
            width = (end - start) // count
            for j in range(count):
                g = start + j * width + int(u(10 + j) * max(1, width - 60))
                if j % 2 == 0:  # the first session of the next month
                    month = int(cal.session_month[g]) + 1
                    g = int(cal.month_first[month]) if month < cal.months else g
                else:
                    g = _first_session_after_holiday(cal, g)
                if start <= g <= end:
                    split_from, split_to = SPLIT_RATIOS[(int(u(20 + j) * 4) + j) % len(SPLIT_RATIOS)]
                    splits.append(Split(tid, g, split_from, split_to, _action_id(bits(30 + j))))
        if pays_dividends(tid) and start < end:
            phase, slot = int(u(2) * 3), 4 + int(u(3) * 10)
            base_yield = 0.003 + 0.009 * u(4)
            first_month = int(cal.session_month[start])
            first_month += (phase - first_month) % 3
            for month in range(first_month, int(cal.session_month[end]) + 1, 3):
                g = int(cal.month_first[month]) + min(slot, int(cal.month_len[month]) - 1)
                if start <= g <= end:
                    quarter_yield = round(base_yield * (0.9 + 0.2 * float(month_u[payer_row[tid], month])), 6)
                    dividends.append(Dividend(tid, g, quarter_yield, _action_id(bits(5000 + month))))
    events: dict[int, list[tuple[int, float, float]]] = {}
    for split in splits:
        events.setdefault(split.tid, []).append((split.g, split.split_from / split.split_to, split.split_to / split.split_from))
    for dividend in dividends:
        events.setdefault(dividend.tid, []).append((dividend.g, 1.0 - dividend.yield_, 1.0))
    steps = {}
    for tid, own in events.items():
        own.sort()
        ex = np.array([e[0] for e in own], dtype=np.int64)
        steps[tid] = (ex, np.cumprod([e[1] for e in own]), np.cumprod([e[2] for e in own]))
    delist.update(cast_delistings or {})
    end_sessions = np.full(size or n, NEVER, dtype=np.int64)
    for tid, g in delist.items():
        end_sessions[tid] = g
    return Actions(tuple(splits), tuple(dividends), delist, steps, end_sessions)


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
class Listing:
    """One security under one ticker: the record /v3/reference/tickers serves while it is active, from `start` (its list
    date, or the day of a rename to this ticker) until `end` (the day of a rename away from it or of its delisting)."""

    tid: int
    ticker: str
    record: dict
    start: dt.date
    end: dt.date | None  # the first day the security no longer trades under the ticker; None while it does
    first_g: int  # the first session with a bar under the ticker
    end_g: int  # the first session without one (NEVER while open)


@dataclass(frozen=True)
class Universe:
    """Per-security arrays in generation order (index = security id), and the ticker periods the API serves.

    A security trades under one ticker at a time, but not always the same one (a rename), and a ticker may pass from one
    security to another (a reuse): bars are computed per security, and served under the ticker it held that session.
    """

    seed: int
    symbols: tuple[str, ...]  # by id: the ticker each security lists under
    security_ids: tuple[int, ...]  # by id: the id `securities` reports (the base: the index; the cast: CAST_IDS_FROM + j)
    listings: tuple[Listing, ...]  # every ticker period, in (ticker, start) order: the served reference records
    holders: dict[str, tuple[Listing, ...]]  # ticker -> its periods, oldest first
    rename_sessions: tuple[int, ...]  # ascending: the id -> ticker map changes on these sessions only
    epoch_symbols: tuple[tuple[str, ...], ...]  # the ticker of each id, between consecutive rename sessions
    epoch_order: tuple[np.ndarray, ...]  # the ids in ticker order, likewise
    list_dates: tuple[dt.date, ...]  # by id
    list_session: np.ndarray  # by id: index of the first session with a bar
    row_keys: np.ndarray
    log_levels: np.ndarray  # (securities, months + 1): log close at the end of month m-1 in column m
    sigma: np.ndarray
    base_volume: np.ndarray
    trade_size: np.ndarray
    actions: Actions  # splits, dividends and delistings of the acting part of the universe

    @property
    def records(self) -> tuple[dict, ...]:
        return tuple(listing.record for listing in self.listings)

    def epoch(self, g: int) -> int:
        return bisect.bisect_right(self.rename_sessions, g)

    def symbols_on(self, g: int) -> tuple[str, ...]:
        """The ticker of each id on session g."""
        return self.epoch_symbols[self.epoch(g)]

    def order_on(self, g: int) -> np.ndarray:
        """The ids in the order of their tickers on session g (the grouped endpoint's order)."""
        return self.epoch_order[self.epoch(g)]

    def holder(self, ticker: str, g: int) -> Listing | None:
        """The period of the security that traded as ticker on session g, if any did."""
        for listing in self.holders.get(ticker, ()):
            if listing.first_g <= g < listing.end_g:
                return listing
        return None


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


# The identity cast: a few securities added to universes of IDENTITY_CAST_FROM tickers or more, whose tickers change
# hands. They come after the base ids and draw from their own hash keys (CAST_IDS_FROM + j), so every base security's
# ticker, bars and actions stay what they were, and the cast's dates and identifiers are the same in every such
# universe of a seed. Each event falls on a session drawn in a fixed window: a few in 2024 (the tests' windows, after
# March, where other tests pin the universe) and one of each kind inside params/local.yaml's default run
# (2026-10-01..2026-10-30), from its third session to its third-to-last so that the run has bars on both sides.
IDENTITY_CAST_FROM = 50
CAST_IDS_FROM = 1_000_000
DEFAULT_RUN_EVENTS = (dt.date(2026, 10, 5), dt.date(2026, 10, 28))


@dataclass(frozen=True)
class Role:
    """One member of the cast: `rename` changes its ticker, `delist` ends it, `relist` lists it under the ticker that
    the member `reuses` (a delisted one) freed: each on a session of `window`."""

    event: str
    window: tuple[dt.date, dt.date]
    reuses: int | None = None


CAST = (
    Role("rename", (dt.date(2024, 6, 3), dt.date(2024, 7, 31))),
    Role("delist", (dt.date(2024, 4, 1), dt.date(2024, 5, 31))),
    Role("relist", (dt.date(2024, 8, 1), dt.date(2024, 9, 30)), reuses=1),
    Role("rename", DEFAULT_RUN_EVENTS),
    Role("delist", (dt.date(2021, 1, 4), dt.date(2023, 12, 29))),
    Role("relist", DEFAULT_RUN_EVENTS, reuses=4),
    Role("delist", DEFAULT_RUN_EVENTS),
)


def _cast_symbols(seed: int, taken: set[str], count: int) -> list[str]:
    """count four-letter tickers, none of them in taken (the base's), from the cast's own seeded stream."""
    rng = np.random.default_rng([seed, 0x1DE7])
    chosen: list[str] = []
    while len(chosen) < count:
        symbol = "".join(_LETTERS[rng.integers(0, 26, size=4)])
        if symbol not in taken and symbol not in chosen:
            chosen.append(symbol)
    return chosen


def _company_name(head_u: float, tail_u: float) -> str:
    return f"{_NAME_HEADS[int(head_u * len(_NAME_HEADS))]} {_NAME_TAILS[int(tail_u * len(_NAME_TAILS))]}"


@lru_cache(maxsize=8)
def build_universe(n: int, seed: int) -> Universe:
    if n < 1:
        raise ValueError(f"the universe needs at least one ticker, got {n}")
    cal = calendar()
    symbols = _symbols(n, seed)
    cast = CAST if n >= IDENTITY_CAST_FROM else ()
    total = n + len(cast)
    security_ids = np.concatenate([np.arange(n), CAST_IDS_FROM + np.arange(len(cast))]).astype(np.int64)
    keys = _row_keys(seed, security_ids)
    u = [_uniform(keys, np.zeros(total, dtype=np.int64), _S_PARAMS * 100 + p) for p in range(12)]
    bits = [_bits(keys, np.full(total, p, dtype=np.int64), _S_PARAMS * 100 + 50) for p in range(3)]

    kind = np.where(u[0] < 0.80, "CS", np.where(u[0] < 0.92, "ETF", np.where(u[0] < 0.97, "ADRC", "PFD")))
    kind[n:] = "CS"
    drift = -0.10 + 0.35 * u[1]
    sigma = 0.15 + 0.45 * u[2]
    sigma = np.where(kind == "ETF", 0.15 + 0.15 * u[2], sigma)  # funds are calmer than single names
    start_price = np.clip(np.exp(math.log(30.0) + 0.9 * _normal(keys, np.zeros(total, dtype=np.int64), 60)), 3.0, 400.0)
    base_volume = np.clip(np.exp(math.log(1.2e6) + 1.2 * _normal(keys, np.zeros(total, dtype=np.int64), 61)), 2e4, 8e7)
    trade_size = 80.0 + 220.0 * u[3]

    # About 10 % list after the first session (uniformly through LAST_LATE_LISTING, a fixed day so that the
    # data never shifts as time passes); the rest listed before 2000. The cast lists before 2000 unless it relists.
    last_listing = cal.last_on_or_before(LAST_LATE_LISTING)
    late = u[4] < 0.10
    late[n:] = False
    late_session = 1 + (u[5] * max(1, last_listing - 1)).astype(np.int64)
    list_session = np.where(late, late_session, 0)

    # The cast's event sessions, and the ticker each member lists under (a relisting takes its predecessor's).
    event_u = _uniform(keys[n:], np.zeros(len(cast), dtype=np.int64), _S_IDENTITY)
    event_g = []
    for role, drawn in zip(cast, event_u.tolist(), strict=True):
        first, last = cal.first_on_or_after(role.window[0]), cal.last_on_or_before(role.window[1])
        event_g.append(first + int(drawn * (last - first + 1)))
    fresh = iter(_cast_symbols(seed, set(symbols), sum(2 if r.event == "rename" else r.event == "delist" for r in cast)))
    tickers_of: list[list[str]] = [[s] for s in symbols]
    for j, role in enumerate(cast):
        if role.event == "relist":
            tickers_of.append([tickers_of[n + role.reuses][0]])
            list_session[n + j] = event_g[j]
        else:
            tickers_of.append([next(fresh)] + ([next(fresh)] if role.event == "rename" else []))
    symbols += [t[0] for t in tickers_of[n:]]
    rename_g = {n + j: g for j, (role, g) in enumerate(zip(cast, event_g, strict=True)) if role.event == "rename"}
    cast_delistings = {n + j: g for j, (role, g) in enumerate(zip(cast, event_g, strict=True)) if role.event == "delist"}

    early_days = (u[5] * (dt.date(1999, 12, 1) - dt.date(1975, 1, 1)).days).astype(np.int64)
    list_dates = tuple(
        cal.sessions[int(list_session[i])] if list_session[i] > 0 else dt.date(1975, 1, 1) + dt.timedelta(days=int(early_days[i]))
        for i in range(total)
    )

    # Monthly log levels: a geometric random walk with per-ticker drift and volatility, folded into the bounds.
    months = cal.months
    month_cols = np.arange(months, dtype=np.int64)
    shocks = _normal(np.repeat(keys, months), np.tile(month_cols, total), _S_MONTH).reshape(total, months)
    years = cal.month_len.astype(np.float64) / TRADING_DAYS_PER_YEAR
    steps = (drift - sigma**2 / 2)[:, None] * years[None, :] + sigma[:, None] * np.sqrt(years)[None, :] * shocks
    lo, hi = math.log(LOW_PRICE), math.log(HIGH_PRICE)
    levels = np.empty((total, months + 1))
    levels[:, 0] = np.log(start_price)
    for m in range(months):
        x = levels[:, m] + steps[:, m]
        x = np.where(x < lo, 2 * lo - x, x)
        levels[:, m + 1] = np.where(x > hi, 2 * hi - x, x)

    actions = build_actions(keys[:n], list_session[:n].astype(np.int64), cast_delistings, total)
    name_u = [_uniform(keys, np.full(total, p, dtype=np.int64), _S_IDENTITY) for p in (1, 2)]
    listings = []
    for i in range(total):
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
        base = {"market": "stocks", "locale": "us", "primary_exchange": exchange, "type": k, "active": True,
                "currency_name": "usd"}  # fmt: skip
        # Like real reference data, some records lack a CIK or FIGIs (the keys are then absent); the cast has them all.
        identifiers = {}
        if i >= n or u[9][i] < (0.6 if k == "ETF" else 0.95):
            identifiers["cik"] = f"{int(bits[0][i] % np.uint64(2_000_000)):010d}"
        if i >= n or u[10][i] < 0.92:
            identifiers["composite_figi"] = _figi(int(bits[1][i]))
            identifiers["share_class_figi"] = _figi(int(bits[2][i]))
        # A renamed security takes a new name with its new ticker (FB became META and Meta Platforms).
        renamed = f"{_company_name(name_u[0][i], name_u[1][i])}"
        names = [name, renamed if renamed != name else f"{renamed} Holdings"]
        changes = [int(list_session[i]), rename_g[i]] if i in rename_g else [int(list_session[i])]
        end_g = int(actions.end_session(np.array([i]))[0])
        bounds = [*changes[1:], end_g]
        for j, (ticker, first_g, stop_g) in enumerate(zip(tickers_of[i], changes, bounds, strict=True)):
            start = list_dates[i] if j == 0 else cal.sessions[first_g]
            updated = max(start, dt.date(2024, 1, 2))
            record = {"ticker": ticker, "name": names[j], **base, **identifiers,
                      "last_updated_utc": f"{updated.isoformat()}T00:00:00Z"}  # fmt: skip
            end = cal.sessions[stop_g] if stop_g < NEVER else None
            listings.append(Listing(i, ticker, record, start, end, first_g, stop_g))

    listings.sort(key=lambda listing: (listing.ticker, listing.start))
    holders: dict[str, list[Listing]] = {}
    for listing in listings:
        holders.setdefault(listing.ticker, []).append(listing)
    rename_sessions = tuple(sorted(set(rename_g.values())))
    epoch_symbols = []
    for epoch_start in (0, *rename_sessions):
        epoch_symbols.append(tuple(tickers_of[i][-1] if rename_g.get(i, NEVER) <= epoch_start else tickers_of[i][0]
                                   for i in range(total)))  # fmt: skip
    epoch_order = tuple(np.array(sorted(range(total), key=on.__getitem__), dtype=np.int64) for on in epoch_symbols)
    return Universe(
        seed=seed,
        symbols=tuple(symbols),
        security_ids=tuple(security_ids.tolist()),
        listings=tuple(listings),
        holders={ticker: tuple(held) for ticker, held in holders.items()},
        rename_sessions=rename_sessions,
        epoch_symbols=tuple(epoch_symbols),
        epoch_order=epoch_order,
        list_dates=list_dates,
        list_session=list_session.astype(np.int64),
        row_keys=keys,
        log_levels=levels,
        sigma=sigma,
        base_volume=base_volume,
        trade_size=trade_size,
        actions=actions,
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
    valid = in_month & (g >= uni.list_session[ids][:, None]) & (g < uni.actions.end_session(ids)[:, None])

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
    price_factor, volume_factor = uni.actions.traded_factors(ids, g)
    if price_factor is not None:
        # As traded: from a split's ex-date on, prices divide by split_to / split_from and volumes multiply by it; from
        # a dividend's ex-date on, prices take 1 - its yield (the close drops by about the dividend). Acting rows only,
        # so every other ticker's numbers stay bit for bit what they were.
        acting = price_factor != 1.0
        o, h, low, c, vw, after, pre = (
            np.where(acting, np.maximum(np.round(x * price_factor, 4), 0.0001), x) for x in (o, h, low, c, vw, after, pre)
        )
        v = np.where(volume_factor != 1.0, np.maximum(np.round(v * volume_factor), 1.0), v)
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

    def day_columns(self, g: int, adjusted_as_of: int | None = None) -> dict[str, np.ndarray]:
        """Grouped bars of session g as columns in ticker order (ids, v, vw, o, c, h, l, t, n); unlisted tickers absent.

        adjusted_as_of: a session index; the bars are then split-adjusted as the API adjusts them on that day
        (`adjusted` in the result says whether any bar changed)."""
        cal = self.calendar
        block = self.blocks.month(int(cal.session_month[g]))
        slot = int(cal.session_slot[g])
        ids = self.universe.order_on(g)
        ids = ids[block["valid"][ids, slot]]
        columns = {k: block[k][ids, slot] for k in ("v", "vw", "o", "c", "h", "l", "n")}
        columns["t"] = np.full(len(ids), int(cal.close_ms[g]), dtype=np.int64)
        columns["ids"] = ids
        columns["adjusted"] = False
        if adjusted_as_of is not None:
            factor = np.ones(len(ids))
            for split in self.universe.actions.splits:
                if g < split.g <= adjusted_as_of:
                    factor[ids == split.tid] *= split.split_from / split.split_to
            if (factor != 1.0).any():
                columns = adjust_columns(columns, factor)
        return columns

    def day_bars(self, g: int) -> list[dict]:
        """Grouped shape (t = 16:00 New York), in ticker order; tickers not yet listed are absent."""
        columns = self.day_columns(g)
        symbols = self.universe.symbols_on(g)
        return [{"T": symbols[i], **bar} for i, bar in zip(columns["ids"].tolist(), columns_to_bars(columns), strict=True)]

    def cell(self, tid: int, g: int, adjusted_as_of: int | None = None) -> dict | None:
        """One bar with afterHours/preMarket, or None before the listing (split-adjusted as of a session when asked)."""
        cal = self.calendar
        block = self.blocks.month(int(cal.session_month[g]))
        slot = int(cal.session_slot[g])
        if not block["valid"][tid, slot]:
            return None
        bar = _bar_dict(block, tid, slot)
        bar["ah"] = float(block["ah"][tid, slot])
        bar["pm"] = float(block["pm"][tid, slot])
        if adjusted_as_of is not None:
            factor = float(self.universe.actions.split_adjustment(tid, np.array([g]), adjusted_as_of)[0])
            if factor != 1.0:
                for k in ("o", "h", "l", "c", "vw", "ah", "pm"):
                    bar[k] *= factor
                bar["v"] /= factor
        return bar

    def ticker_columns(self, tid: int, first_g: int, last_g: int) -> dict[str, np.ndarray]:
        """Range bars as columns v, vw, o, c, h, l, t (00:00 New York), n, g for sessions first_g..last_g, ascending."""
        cal = self.calendar
        first_g = max(first_g, int(self.universe.list_session[tid]))
        if last_g < first_g:
            return _no_columns()
        m0, m1 = int(cal.session_month[first_g]), int(cal.session_month[last_g])
        months = np.arange(m0, m1 + 1, dtype=np.int64)
        rows = compute_rows(self.universe, np.full(len(months), tid, dtype=np.int64), months)
        keep = rows["valid"] & (rows["g"] >= first_g) & (rows["g"] <= last_g)
        columns = {k: rows[k][keep] for k in ("v", "vw", "o", "c", "h", "l", "n", "g")}
        columns["t"] = cal.midnight_ms[columns["g"]]
        return columns

    def adjusted_ticker_columns(self, tid: int, first_g: int, last_g: int, as_of_g: int) -> dict[str, np.ndarray]:
        """ticker_columns split-adjusted as the API adjusts them on session as_of_g (`adjusted`: any bar changed)."""
        columns = self.ticker_columns(tid, first_g, last_g)
        columns["adjusted"] = False
        factor = self.universe.actions.split_adjustment(tid, columns["g"], as_of_g)
        return adjust_columns(columns, factor) if (factor != 1.0).any() else columns

    def symbol_columns(self, ticker: str, first_g: int, last_g: int, adjusted_as_of: int | None = None) -> dict:
        """ticker_columns of whichever security traded as ticker on each session first_g..last_g: a renamed security's
        bars before the change are its old ticker's, and a reused ticker's before its new listing the old company's.
        Split-adjusted as of a session when asked, per security (`adjusted`: any bar changed)."""
        parts = []
        for listing in self.universe.holders.get(ticker, ()):
            start, stop = max(first_g, listing.first_g), min(last_g, listing.end_g - 1)
            if start <= stop:
                if adjusted_as_of is None:
                    parts.append(self.ticker_columns(listing.tid, start, stop))
                else:
                    parts.append(self.adjusted_ticker_columns(listing.tid, start, stop, adjusted_as_of))
        if len(parts) == 1:
            return parts[0]
        columns = {k: np.concatenate([p[k] for p in parts]) for k in (*RANGE_KEYS, "g")} if parts else _no_columns()
        if adjusted_as_of is not None:
            columns["adjusted"] = any(p["adjusted"] for p in parts)
        return columns

    def ticker_bars(self, tid: int, first_g: int, last_g: int) -> list[dict]:
        """Range shape (t = 00:00 New York), sessions first_g..last_g inclusive, ascending."""
        return columns_to_bars(self.ticker_columns(tid, first_g, last_g))


RANGE_KEYS = ("v", "vw", "o", "c", "h", "l", "t", "n")


def _no_columns() -> dict[str, np.ndarray]:
    empty = np.zeros(0)
    return {k: empty for k in ("v", "vw", "o", "c", "h", "l")} | {k: np.zeros(0, dtype=np.int64) for k in ("t", "n", "g")}


def adjust_columns(columns: dict, factor: np.ndarray) -> dict:
    """Prices times factor, volume divided by it, unrounded as the API serves adjusted bars; a new dict."""
    adjusted = dict(columns)
    for k in ("vw", "o", "c", "h", "l"):
        adjusted[k] = columns[k] * factor
    adjusted["v"] = columns["v"] / factor
    adjusted["adjusted"] = True
    return adjusted


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
    """The /v3/reference/tickers records the simulator serves while active, in ticker order: one per security and
    ticker, so a renamed security has two and a reused ticker two securities (universes of IDENTITY_CAST_FROM or
    more; `securities` says when each holds)."""
    return [dict(r) for r in build_universe(n, seed).records]


def listing_dates(n: int = 300, seed: int = 42) -> dict[str, dt.date]:
    """Each ticker's first list date, or the day a rename gave it (before 2000 for most; no bar and no reference
    record before it)."""
    dates: dict[str, dt.date] = {}
    for listing in build_universe(n, seed).listings:
        dates.setdefault(listing.ticker, listing.start)
    return dates


def bars_for_day(day: dt.date, n: int = 300, seed: int = 42, adjusted: bool = True,
                 as_of: dt.date | None = None) -> list[dict]:
    """The grouped-daily results for day (empty on non-sessions and after as_of, default today); adjusted as the
    API's default (split-adjusted as of as_of), as traded with adjusted=False."""
    market = _market(n, seed)
    as_of = as_of or today_new_york()
    g = market.session_index(day, as_of)
    if g is None:
        return []
    columns = market.day_columns(g, adjusted_as_of=market.calendar.last_on_or_before(as_of) if adjusted else None)
    symbols = market.universe.symbols_on(g)
    return [{"T": symbols[i], **b} for i, b in zip(columns["ids"].tolist(), columns_to_bars(columns), strict=True)]


def bar(ticker: str, day: dt.date, n: int = 300, seed: int = 42, adjusted: bool = True,
        as_of: dt.date | None = None) -> dict | None:
    """The range-shaped bar of ticker on day (t = 00:00 New York), or None when there is none; adjusted as
    bars_for_day."""
    market = _market(n, seed)
    as_of = as_of or today_new_york()
    g = market.session_index(day, as_of)
    listing = None if g is None else market.universe.holder(ticker, g)
    if listing is None:
        return None
    cell = market.cell(listing.tid, g, adjusted_as_of=market.calendar.last_on_or_before(as_of) if adjusted else None)
    if cell is None:
        return None
    return {k: cell[k] for k in ("v", "vw", "o", "c", "h", "l")} | {"t": int(market.calendar.midnight_ms[g]), "n": cell["n"]}


def delisting_dates(n: int = 300, seed: int = 42) -> dict[str, dt.date]:
    """The tickers of the securities that delist and the day they do (their last bar is the session before; inactive
    from that day). A rename is no delisting, and a reused ticker trades again later: `securities` has both."""
    uni = build_universe(n, seed)
    cal = calendar()
    return {uni.symbols_on(g - 1)[t]: cal.sessions[g] for t, g in uni.actions.delist_session.items()}


def securities(n: int = 300, seed: int = 42, as_of: dt.date | None = None) -> list[dict]:
    """Every security under every ticker it has held by as_of (default today), one record per period in (ticker,
    valid_from) order: the truth the reference endpoints serve.

    security: the simulator's id for it (the same in every universe of the seed that holds it); ticker; valid_from,
    its first day under the ticker; valid_to, the first day no longer under it (the day of a rename or delisting, as
    Massive dates a ticker_change event and delisted_utc), None while held; name (of that period), cik,
    composite_figi, share_class_figi (None where the reference data lacks them); list_date and delisted_date of the
    security (delisted_date None unless it delisted by as_of)."""
    as_of = as_of or today_new_york()
    uni = build_universe(n, seed)
    cal = calendar()
    periods = []
    for listing in uni.listings:
        if listing.start > as_of:
            continue
        record = listing.record
        delisted = uni.actions.delist_session.get(listing.tid)
        periods.append({
            "security": uni.security_ids[listing.tid], "ticker": listing.ticker, "valid_from": listing.start,
            "valid_to": listing.end if listing.end is not None and listing.end <= as_of else None,
            "name": record["name"], "cik": record.get("cik"), "composite_figi": record.get("composite_figi"),
            "share_class_figi": record.get("share_class_figi"), "list_date": uni.list_dates[listing.tid],
            "delisted_date": cal.sessions[delisted] if delisted is not None and cal.sessions[delisted] <= as_of else None,
        })  # fmt: skip
    return periods


def ticker_changes(n: int = 300, seed: int = 42, as_of: dt.date | None = None) -> list[dict]:
    """The renames by as_of (default today), by date: security, composite_figi, date (the first session under the new
    ticker), old_ticker, new_ticker. A reused ticker is no change: two securities, each listing once."""
    periods = securities(n, seed, as_of)
    changes = []
    for old in periods:
        new = next((p for p in periods if p["security"] == old["security"] and p["valid_from"] == old["valid_to"]), None)
        if new is not None:
            changes.append({"security": old["security"], "composite_figi": old["composite_figi"],
                            "date": new["valid_from"], "old_ticker": old["ticker"], "new_ticker": new["ticker"]})  # fmt: skip
    return sorted(changes, key=lambda change: (change["date"], change["old_ticker"]))


def _next_session_on_or_after(cal: Calendar, day: dt.date) -> dt.date:
    i = cal.first_on_or_after(day)
    return cal.sessions[min(i, len(cal.sessions) - 1)]


@lru_cache(maxsize=4)
def action_records(n: int = 300, seed: int = 42) -> tuple[dict, ...]:
    """Every split and dividend of the universe as plain records in (ticker, ex_date) order, dates as date objects:
    ticker, action_type, ex_date, split_from, split_to (splits), cash_amount, declaration_date, record_date, pay_date
    (dividends), announced (the day the API starts listing it), id. A dividend pays its yield of the previous
    as-traded close, rounded to 4 decimals."""
    uni = build_universe(n, seed)
    cal = calendar()
    records = []
    for split in uni.actions.splits:
        ex = cal.sessions[split.g]
        records.append({"ticker": uni.symbols[split.tid], "action_type": "split", "ex_date": ex,
                        "split_from": split.split_from, "split_to": split.split_to,
                        "announced": ex - dt.timedelta(days=SPLIT_NOTICE_DAYS), "id": split.action_id})  # fmt: skip
    dividends = uni.actions.dividends
    # The as-traded close of the session before each ex-date: one batch of (ticker, month) rows for all of them.
    tids = np.array([d.tid for d in dividends], dtype=np.int64)
    previous = np.array([d.g - 1 for d in dividends], dtype=np.int64)
    months = cal.session_month[previous]
    pairs = np.unique(np.stack([tids, months], axis=1), axis=0)
    rows = compute_rows(uni, pairs[:, 0], pairs[:, 1])
    at = np.searchsorted(pairs[:, 0] * (1 << 20) + pairs[:, 1], tids * (1 << 20) + months)  # each dividend's row
    slot = previous - cal.month_first[months]
    closes = np.where(rows["valid"][at, slot], rows["c"][at, slot], 1.0).tolist()
    for dividend, close_before in zip(dividends, closes, strict=True):
        tid = dividend.tid
        ex = cal.sessions[dividend.g]
        declared = ex - dt.timedelta(days=21)
        record_day = ex if ex >= T_PLUS_ONE else cal.sessions[min(dividend.g + 1, len(cal.sessions) - 1)]
        records.append({
            "ticker": uni.symbols[tid], "action_type": "dividend", "ex_date": ex,
            "cash_amount": max(0.0001, round(dividend.yield_ * close_before, 4)),
            "yield": dividend.yield_,
            "declaration_date": declared, "record_date": record_day,
            "pay_date": _next_session_on_or_after(cal, ex + dt.timedelta(days=14)),
            "announced": declared, "id": dividend.action_id,
        })  # fmt: skip
    records.sort(key=lambda r: (r["ticker"], r["ex_date"], r["action_type"]))
    return tuple(records)


def corporate_actions(n: int = 300, seed: int = 42, as_of: dt.date | None = None) -> list[dict]:
    """The splits and dividends the API lists on day as_of (default today): those announced by then."""
    as_of = as_of or today_new_york()
    return [dict(r) for r in action_records(n, seed) if r["announced"] <= as_of]
