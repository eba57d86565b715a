"""Which security traded under a ticker on a day: the periods of the `securities` table (one row per security and
ticker period, kept by lib.ingestion.securities) as readers and joins use them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

COLUMNS = ("security_id", "ticker", "valid_from", "valid_to", "name", "cik", "composite_figi", "share_class_figi",
           "delisted_date")  # fmt: skip


def period_order(p: dict) -> tuple:
    """A security's periods, or a ticker's, in the order they held: by their end, the current one last."""
    return (p["valid_to"] is None, p["valid_to"] or dt.date.min)


def intervals(periods: Iterable[dict]) -> list[tuple[str, dt.date | None, dt.date | None, str]]:
    """(ticker, from, until, security_id): the days each security traded under each ticker, as bars meet them. A
    ticker's periods follow each other: one runs from its own first day (valid_from) or, when that is unknown, from
    the end of the ticker's period before it (null: since ever) until before its own end (null: still held). A bar
    on day d under ticker t belongs to the one interval of t holding d."""
    by_ticker: dict[str, list[dict]] = {}
    for p in periods:
        by_ticker.setdefault(p["ticker"], []).append(p)
    rows = []
    for ticker, mine in sorted(by_ticker.items()):
        mine = sorted(mine, key=period_order)
        low = None
        for p in mine:
            start = max(low, p["valid_from"]) if low and p["valid_from"] else (p["valid_from"] or low)
            rows.append((ticker, start, p["valid_to"], p["security_id"]))
            low = p["valid_to"]
            if low is None:
                break
    return rows


def holder(periods: Iterable[dict], ticker: str, start: dt.date, end: dt.date) -> str | None:
    """The security a read of ticker over start..end means (contract: reads by ticker): the one that held it on the
    last day of the span that anybody held it; when nobody held it in the span, the last to hold it before (an old
    ticker finds its security), else the first after. None when the periods never had the ticker."""
    mine = [(low, high, security_id) for t, low, high, security_id in intervals(periods) if t == ticker]
    if not mine:
        return None
    before = [(min(high - dt.timedelta(days=1), end) if high else end, security_id)
              for low, high, security_id in mine if low is None or low <= end]  # fmt: skip
    if before:
        return max(before, key=lambda held: held[0])[1]
    return min(mine, key=lambda held: held[0])[2]


def resolve(periods: Iterable[dict], tickers: Iterable[str], start: dt.date, end: dt.date) -> dict[str, str]:
    """{ticker: security_id} for a read of `tickers` over start..end (`holder`); a ticker the periods never had is its
    own security, as the bars of a ticker the reference data never listed are identified."""
    periods = list(periods)
    return {ticker: holder(periods, ticker, start, end) or ticker for ticker in tickers}
