"""NYSE trading days from exchange_calendars (XNYS), the one source of market days in the workspace."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd

FIRST_SESSION = dt.date(2000, 1, 3)
NEW_YORK = "America/New_York"


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xcals

    return xcals.get_calendar("XNYS", start="2000-01-01")


@lru_cache(maxsize=1)
def _all_sessions() -> tuple[dt.date, ...]:
    sessions = _calendar().sessions
    return tuple(d.date() for d in sessions)


def today_new_york() -> dt.date:
    """Today's date on the exchange's clock."""
    return pd.Timestamp.now(tz=NEW_YORK).date()


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """NYSE sessions from start to end, both included, in order."""
    if start > end:
        return []
    import bisect

    sessions = _all_sessions()
    lo = bisect.bisect_left(sessions, start)
    hi = bisect.bisect_right(sessions, end)
    return list(sessions[lo:hi])


def is_trading_day(day: dt.date) -> bool:
    """True when NYSE holds a session on `day`."""
    return bool(trading_days(day, day))


def last_trading_day_on_or_before(day: dt.date) -> dt.date | None:
    """The latest NYSE session not after `day`, or None before 2000-01-03."""
    import bisect

    sessions = _all_sessions()
    i = bisect.bisect_right(sessions, day)
    return sessions[i - 1] if i else None
