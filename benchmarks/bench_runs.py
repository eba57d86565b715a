"""A year's backfill for 1,000 simulator tickers: one range run against one papermill run per market day.

The range run is `python -m lib.run --start-ds 2025-01-02 --ds 2025-12-31` (all four notebooks, range ingestion,
one-pass rollup). The per-day backfill is `python -m lib.run --per-day` over the same year, in its own warehouse;
it is measured on its first few market days and scaled to the year (running all of it would take hours, which is
the point). Later days cost at least as much as the first ones (more history to read), so the ratio is a floor.
`--quick`: 100 tickers, one month, one day per-day. Both are timed end to end as a user runs them (wall clock of
the command). Everything lives in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib.core.trading_days import trading_days

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 20.0


@dataclasses.dataclass(frozen=True)
class Size:
    tickers: int
    start: dt.date
    end: dt.date
    per_day_sample: int  # market days run one by one, from the start of the span


FULL = Size(tickers=1000, start=dt.date(2025, 1, 2), end=dt.date(2025, 12, 31), per_day_sample=2)
QUICK = Size(tickers=100, start=dt.date(2025, 6, 2), end=dt.date(2025, 6, 30), per_day_sample=1)


def run_command(args: list[str], warehouse: Path, runs_root: Path, tickers: int) -> float:
    """Seconds for one `python -m lib.run ...` as a user runs it; raises when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "POLYGON_API_KEY"}  # the simulator, whatever the shell has
    command = [
        sys.executable,
        "-m",
        "lib.run",
        "-f",
        "params/local.yaml",
        *args,
        "-p",
        "warehouse",
        str(warehouse),
        "-p",
        "simulator_tickers",
        str(tickers),
        "--runs-root",
        str(runs_root),
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return seconds


def main(quick: bool = False) -> None:
    size = QUICK if quick else FULL
    days = trading_days(size.start, size.end)
    sample = days[: size.per_day_sample]
    root = Path(tempfile.mkdtemp(prefix="bench_runs_"))
    try:
        print(f"{size.tickers:,} simulator tickers, {size.start}..{size.end}: {len(days)} market days")
        range_seconds = run_command(
            ["--start-ds", str(size.start), "--ds", str(size.end)], root / "range_warehouse", root / "range_runs", size.tickers
        )
        print(f"  range run (4 notebooks, once):         {range_seconds:8.0f} s")
        # A per-day backfill starts from an empty warehouse and runs the days in order, like a scheduler.
        per_day_seconds = run_command(
            ["--per-day", "--start-ds", str(sample[0]), "--ds", str(sample[-1])],
            root / "daily_warehouse",
            root / "daily_runs",
            size.tickers,
        )
        per_day = per_day_seconds / len(sample)
        scaled = per_day * len(days)
        print(f"  per-day runs, {len(sample)} day(s) measured:        {per_day_seconds:8.0f} s ({per_day:.0f} s per day)")
        print(f"  per-day runs, scaled to {len(days)} days:        {scaled:8.0f} s ({scaled / 3600:.1f} h)")
        ratio = scaled / range_seconds
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(f"  range run is {ratio:.0f}x faster than per-day runs ({verdict} the {TARGET_RATIO:.0f}x target)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
