"""A simulator of Massive (formerly Polygon.io): deterministic daily bars on NYSE sessions over REST, and their minute
bars over the real-time websocket feed at /stocks, served by aiohttp.

Run it with `python -m lib.simulator`, or from Python with `SimulatorProcess` / `start_simulator`.
The pure functions `universe`, `bars_for_day`, `bar`, `corporate_actions`, `delisting_dates`, `securities` and
`ticker_changes` give the exact data the server serves; `minute_bars` and `feed_frames` what the feed sends. Bars are as
traded: part of the universe splits, part pays quarterly dividends, a few delist. Tickers are not identities: in
universes of IDENTITY_CAST_FROM tickers or more a security renames, and a delisted company's ticker is listed again by
another (in 2024 and in the default run's month); the bars of a day are served under the ticker traded that day.
"""

from lib.simulator.data import (
    IDENTITY_CAST_FROM,
    bar,
    bars_for_day,
    corporate_actions,
    delisting_dates,
    listing_dates,
    securities,
    ticker_changes,
    universe,
)
from lib.simulator.feed import FeedSettings, feed_frames, feed_session, minute_bars, preliminary
from lib.simulator.process import SimulatorError, SimulatorProcess, start_simulator

__all__ = [
    "IDENTITY_CAST_FROM",
    "FeedSettings",
    "SimulatorError",
    "SimulatorProcess",
    "bar",
    "bars_for_day",
    "corporate_actions",
    "delisting_dates",
    "feed_frames",
    "feed_session",
    "listing_dates",
    "minute_bars",
    "preliminary",
    "securities",
    "start_simulator",
    "ticker_changes",
    "universe",
]
