"""A simulator of Massive (formerly Polygon.io): deterministic daily bars on NYSE sessions over REST, and their minute
bars over the real-time websocket feed at /stocks, served by aiohttp.

Run it with `python -m lib.simulator`, or from Python with `SimulatorProcess` / `start_simulator`.
The pure functions `universe`, `bars_for_day`, `bar`, `corporate_actions` and `delisting_dates` give the exact data
the server serves; `minute_bars` and `feed_frames` what the feed sends. Bars are as traded: part of the universe
splits, part pays quarterly dividends, a few delist.
"""

from lib.simulator.data import bar, bars_for_day, corporate_actions, delisting_dates, listing_dates, universe
from lib.simulator.feed import FeedSettings, feed_frames, feed_session, minute_bars, preliminary
from lib.simulator.process import SimulatorError, SimulatorProcess, start_simulator

__all__ = [
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
    "start_simulator",
    "universe",
]
