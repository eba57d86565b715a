"""The quality checks' names, severities and thresholds, with their defaults: what a run's `quality` parameter may set.

Spark-free, so the run's settings can validate a params file without starting the checks themselves
(lib.quality.checks runs them).
"""

from __future__ import annotations

import copy

from lib.core.errors import ConfigError

SEVERITIES = ("error", "warn")

DEFAULT_THRESHOLDS: dict = {
    # vwap may sit this fraction outside [low, high] (rounding by the source) before it is a defect.
    "vwap_tolerance": 0.01,
    # Monthly array values and stock_prices values agree within this relative difference.
    "array_tolerance": 1e-9,
    # |robust z| (median/MAD per symbol over the span) above which a close move or a volume is an outlier.
    "outlier_z": 8.0,
    # Symbols with fewer observations than this in the span are not scored for outliers.
    "outlier_min_days": 10,
    # A close-to-close move (as traded) beyond this factor either way, that no split explains, is a price jump:
    # 1.4 catches the smallest common split, 3-for-2 (x1.5 or x0.67), even on a day the stock moves 7% against it,
    # while a listed stock rarely gains 40% or loses 29% in one session without news worth a look anyway.
    "jump_ratio": 1.4,
    # Across a split's ex-date the as-traded close should move by split_from / split_to, give or take a normal
    # day's move; beyond this factor the prices do not show the split (a wrong ex-date, or prices already adjusted).
    # 1.2 still tells a 5-for-4 split (x0.8) from no split at all.
    "split_tolerance": 1.2,
    # A day's minute bars (minute_bars) and its daily bar agree on volume, high and low within this relative difference.
    "minute_daily_tolerance": 0.001,
    "severity": {
        "duplicates": "error",
        "null_values": "error",
        "ohlc_consistency": "error",
        "volume_non_negative": "error",
        "completeness_tickers": "warn",
        "completeness_days": "error",
        "array_integrity": "error",
        "outliers": "warn",
        # Real markets do jump: a warning to look at, not a stop.
        "price_jumps": "warn",
        # An impossible action (a duplicate, a zero ratio, a dividend of the whole price) corrupts every adjusted read
        # of the symbol, as an impossible bar does: it stops the publish like ohlc_consistency.
        "corporate_actions": "error",
        # Minute bars short of the day's volume are most often a gap of the stream (minute_bar_gaps): a warning.
        "minute_bars_vs_daily": "warn",
    },
}

CHECK_NAMES = tuple(DEFAULT_THRESHOLDS["severity"])


def resolve_thresholds(thresholds: dict | None = None) -> dict:
    """DEFAULT_THRESHOLDS overlaid with `thresholds` (the params file's `quality` section); validated."""
    merged = copy.deepcopy(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key == "severity":
            merged["severity"].update(value or {})
        else:
            merged[key] = value
    unknown = set(merged["severity"]) - set(CHECK_NAMES)
    if unknown:
        raise ConfigError(f"quality severity names unknown checks {sorted(unknown)}; expected some of {list(CHECK_NAMES)}")
    for name, severity in merged["severity"].items():
        if severity not in SEVERITIES:
            raise ConfigError(f"quality severity of {name} must be one of {list(SEVERITIES)}, got {severity!r}")
    for key in ("vwap_tolerance", "array_tolerance", "outlier_z", "outlier_min_days", "minute_daily_tolerance"):
        if not isinstance(merged[key], int | float) or merged[key] < 0:
            raise ConfigError(f"quality threshold {key} must be a non-negative number, got {merged[key]!r}")
    for key in ("jump_ratio", "split_tolerance"):
        if not isinstance(merged[key], int | float) or merged[key] <= 1:
            raise ConfigError(f"quality threshold {key} must be a factor above 1 (e.g. 1.4), got {merged[key]!r}")
    return merged
