"""A REST simulator of Massive (formerly Polygon.io): deterministic daily bars on NYSE sessions, served by aiohttp.

Run it with `python -m lib.simulator`, or from Python with `SimulatorProcess` / `start_simulator`.
The pure functions `universe`, `bars_for_day` and `bar` give the exact data the server serves.
"""

from lib.simulator.data import bar, bars_for_day, listing_dates, universe
from lib.simulator.process import SimulatorError, SimulatorProcess, start_simulator

__all__ = [
    "SimulatorError",
    "SimulatorProcess",
    "bar",
    "bars_for_day",
    "listing_dates",
    "start_simulator",
    "universe",
]
