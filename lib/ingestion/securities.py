"""Securities: which security traded under a ticker on a day, from Massive's reference data (plain records, no Spark).

A ticker is not an identity: a company renames (FB became META on 2022-06-09: one security, two tickers), a ticker a
delisted company freed is listed later by another (two securities, one ticker), companies delist. Massive names a
security by its composite FIGI, and every ticker record carries it; the bars carry only the ticker.

`resolve` keeps the `securities` table: one row per security and ticker period (COLUMNS). Its inputs are the ticker
records a run already fetches (the tickers listed on ds; a backfill also those delisted during its span), the periods
stored by earlier runs, and a call only where a ticker is new or vanished:

- a ticker that was current in the stored periods and is not listed on ds: `tickers?ticker=X&active=false&date=ds`,
  one call, whose record dates the end of the period (a rename away from it or a delisting: `delisted_utc`);
- a ticker without a composite FIGI that the stored periods do not hold: its ticker details, one call, whose
  `list_date` names it (`security_id` is `TICKER:list_date`, stable whichever run meets it first).

A security's periods follow each other: a period after the first starts where the one before ended (`valid_from`); a
first period starts on the list_date where the run asked for it (securities without a FIGI), else it is null (held
since its listing, which the list endpoint does not give). `delisted_date` is the end of a security's last period when
that ended. What the stored periods say is kept: a past day's run, which sees a renamed ticker still listed, does not
reopen its period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable

from lib.storage.securities import COLUMNS, period_order


def _day(value) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def fallback_id(ticker: str, list_date: dt.date | None) -> str:
    """The id of a security the reference data gives no composite FIGI for: its ticker and the day it listed under it
    (the ticker alone when even that is unknown: bars of a ticker the reference data never listed)."""
    return f"{ticker}:{list_date.isoformat()}" if list_date else ticker


@dataclasses.dataclass
class Resolution:
    periods: list[dict]  # COLUMNS, in (ticker, valid_to) order, current periods last
    calls: dict[str, int]  # the reference calls resolve made, by kind: vanished (inactive lookups), details
    renames: list[tuple[str, str, dt.date]]  # (old ticker, new ticker, day) learned by this run
    delistings: list[tuple[str, dt.date]]  # (ticker, day) learned by this run


def resolve(
    stored: Iterable[dict],
    listed: Iterable[dict],
    delisted: Iterable[dict] | None,
    ds: dt.date,
    inactive_records: Callable[[str], list[dict]],
    details: Callable[[str, dt.date], dict | None],
    newest: bool = True,
) -> Resolution:
    """The securities after a run of ds: `stored` (COLUMNS dicts) updated with the run's ticker records.

    `listed`: the records of the tickers listed on ds; `delisted`: the records of tickers delisted during a backfill's
    span (None for a daily run). A ticker current in `stored` that neither lists is asked about through
    `inactive_records(ticker)` (its records no longer active on ds) when the run is the `newest` (no stored bar after
    ds): a re-run of a past day has nothing to learn of what vanished since, and would ask about every later listing;
    `details(ticker, day)`: Massive's ticker details (for a ticker without a FIGI that the stored periods lack)."""
    stored = [dict(p) for p in stored]
    listed, delisted = list(listed), list(delisted) if delisted is not None else None
    calls = {"vanished": 0, "details": 0}
    listed_tickers = {r.get("ticker") for r in listed if r.get("ticker")}
    observations = [(r, None) for r in listed if r.get("ticker")]
    if delisted is not None:
        observations += [(r, _day(r.get("delisted_utc"))) for r in delisted
                         if r.get("ticker") and r.get("delisted_utc") and _day(r.get("delisted_utc")) <= ds]  # fmt: skip
    seen = listed_tickers | {r.get("ticker") for r, _ in observations}
    for ticker in sorted({p["ticker"] for p in stored if p["valid_to"] is None} - seen) if newest else ():
        # Current when last seen, and neither listed on ds nor among the delisted records the run has: gone since.
        calls["vanished"] += 1
        for record in inactive_records(ticker):
            ended = _day(record.get("delisted_utc"))
            if record.get("ticker") == ticker and ended is not None and ended <= ds:
                observations.append((record, ended))

    by_key: dict[tuple[str, str], dict] = {(p["security_id"], p["ticker"]): p for p in stored}
    renames_before = _renames(by_key.values())
    closed_before = {key for key, p in by_key.items() if p["valid_to"] is not None}
    new_keys: set[tuple[str, str]] = set()
    for record, ended in observations:
        ticker = record["ticker"]
        figi = record.get("composite_figi") or None
        if figi:
            security_id, list_date = figi, None
        else:
            security_id, list_date = _id_without_figi(by_key.values(), ticker, ended, ds, details, calls)
        key = (security_id, ticker)
        period = by_key.get(key)
        if period is None:
            period = by_key[key] = {c: None for c in COLUMNS} | {"security_id": security_id, "ticker": ticker,
                                                                  "valid_from": list_date}  # fmt: skip
            new_keys.add(key)
        if ended is not None:
            period["valid_to"] = ended  # what ended stays ended, and the latest word on when wins
        if ended is None or period["name"] is None:  # the listed record describes the period best
            period.update({"name": record.get("name"), "cik": record.get("cik") or None, "composite_figi": figi,
                           "share_class_figi": record.get("share_class_figi") or None})  # fmt: skip

    periods = _chain(by_key.values())
    _date_reuses(periods, new_keys, ds, details, calls)
    renames = sorted(set(_renames(periods)) - set(renames_before), key=lambda r: (r[2], r[0]))
    delistings = sorted(
        {(p["ticker"], p["delisted_date"]) for p in periods
         if p["delisted_date"] is not None and p["valid_to"] == p["delisted_date"]
         and (p["security_id"], p["ticker"]) not in closed_before},
        key=lambda d: (d[1], d[0]),
    )  # fmt: skip
    return Resolution(periods, calls, renames, delistings)


def _id_without_figi(periods, ticker: str, ended: dt.date | None, ds: dt.date, details, calls) -> tuple[str, dt.date | None]:
    """(security_id, list_date) of a ticker period without a composite FIGI: the stored period of the ticker it
    continues (the current one for a listed record; the one that ended that day, or the current one, for an ended
    one); else from its ticker details (one call), asked on a day it was held."""
    mine = [p for p in periods if p["ticker"] == ticker and not p["composite_figi"]]
    for p in mine:
        if p["valid_to"] == ended and ended is not None:
            return p["security_id"], p["valid_from"]
    for p in mine:
        if p["valid_to"] is None:
            return p["security_id"], p["valid_from"]
    calls["details"] += 1
    record = details(ticker, (ended - dt.timedelta(days=1)) if ended else ds) or {}
    list_date = _day(record.get("list_date"))
    return fallback_id(ticker, list_date), list_date


def _date_reuses(periods: list[dict], new_keys: set, ds: dt.date, details, calls) -> None:
    """A ticker that another security held before: its new holder's first day under it, from its ticker details (one
    call, when the run first meets the period), so that the days between the two (nobody's) are not taken for the
    new holder's. A rename's period is dated by the period before it already."""
    ends = {}
    for p in periods:
        if p["valid_to"] is not None:
            ends.setdefault(p["ticker"], []).append((p["valid_to"], p["security_id"]))
    for p in periods:
        key = (p["security_id"], p["ticker"])
        before = [end for end, other in ends.get(p["ticker"], ()) if other != p["security_id"]
                  and (p["valid_to"] is None or end < p["valid_to"])]  # fmt: skip
        if key in new_keys and p["valid_from"] is None and before:
            calls["details"] += 1
            record = details(p["ticker"], (p["valid_to"] - dt.timedelta(days=1)) if p["valid_to"] else ds) or {}
            p["valid_from"] = _day(record.get("list_date"))


def _chain(periods: Iterable[dict]) -> list[dict]:
    """Each security's periods in order: a period starts where the one before ended; the security's delisted_date is
    the end of its last period when that ended."""
    by_security: dict[str, list[dict]] = {}
    for p in periods:
        by_security.setdefault(p["security_id"], []).append(p)
    chained = []
    for mine in by_security.values():
        mine.sort(key=period_order)
        for before, after in zip(mine, mine[1:], strict=False):
            if before["valid_to"] is not None:
                after["valid_from"] = before["valid_to"]
        last_end = mine[-1]["valid_to"]
        for p in mine:
            p["delisted_date"] = last_end
        chained += mine
    return sorted(chained, key=lambda p: (p["ticker"], *period_order(p)))


def _renames(periods: Iterable[dict]) -> list[tuple[str, str, dt.date]]:
    by_security: dict[str, list[dict]] = {}
    for p in periods:
        by_security.setdefault(p["security_id"], []).append(p)
    found = []
    for mine in by_security.values():
        mine = sorted(mine, key=period_order)
        for before, after in zip(mine, mine[1:], strict=False):
            if before["valid_to"] is not None:
                found.append((before["ticker"], after["ticker"], before["valid_to"]))
    return found
