"""Streaming: latency from a minute bar's window end to its visibility in minute_bars, and bars per second sustained.

`python -m lib.stream` runs as a user starts it, against the simulator's websocket feed with 1,000 tickers
(`--quick`: 200). Latency: the feed plays 2 session minutes a second (a frame of every ticker's bar each half second,
when the real feed sends one a minute) for LATENCY_SECONDS; the feed sends a bar the moment its window ends on its
clock, and the stream stamps it `received_at` on arrival (loopback: within a millisecond), so a bar's latency is the
commit time of the first Iceberg snapshot of minute_bars that holds it minus its received_at; p50 and p95 over bars
after the first JIT_WARM_UP_S (a fresh JVM's first micro-batches are slow; the whole run is reported too).
Throughput: the feed plays a whole day at 20 minutes a second (20,000 bars a second offered, more than the query
takes): bars per second from the first bar received to the last one visible. In both runs the feed's clock starts
WARM_UP_S after the subscription, so Spark is up when the first bar comes. Baselines: what the real feed asks at
1,000 symbols (one bar per symbol per minute: latency against the 60 s bar interval, throughput against 1,000 bars a
minute) and at the whole US market (about 10,000 symbols). Everything lives in a temporary folder.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2024, 3, 28)
KEY = "bench-stream-key"
LATENCY_SPEED = 2.0  # session minutes a second in the latency run
LATENCY_SECONDS = 180.0
JIT_WARM_UP_S = 60.0  # a fresh JVM's first micro-batches are slow (class loading, code generation): reported apart
WARM_UP_S = 90.0  # the feed waits this long after the subscription: Spark's start, under load, takes up to ~75 s
THROUGHPUT_SPEED = 20.0
BAR_INTERVAL_S = 60.0  # the real feed: one bar per symbol per minute
MARKET_SYMBOLS = 10_000


def run_stream(warehouse: Path, tickers: int, speed: float, feed_seconds: float, log: Path) -> float:
    """Stream from a fresh simulator into `warehouse`: the feed's clock starts WARM_UP_S after the subscription, when
    the query is up, then plays for `feed_seconds`; returns the wall seconds of the run."""
    from lib.simulator import SimulatorProcess

    env = {k: v for k, v in os.environ.items() if k not in ("MASSIVE_API_KEY", "POLYGON_API_KEY")}
    env |= {"MASSIVE_API_KEY": KEY, "PYTHONPATH": str(REPO)}
    with SimulatorProcess(tickers=tickers, api_key=KEY, feed_day=DAY, feed_minutes_per_second=speed,
                          feed_start_delay=WARM_UP_S) as sim:  # fmt: skip
        started = time.monotonic()
        command = [sys.executable, "-m", "lib.stream", "-f", "params/local.yaml", "-p", "warehouse", str(warehouse),
                   "-p", "ds", str(DAY), "-p", "start_ds", str(DAY), "-p", "stream_url", sim.stream_url,
                   "--for-seconds", str(WARM_UP_S + feed_seconds + 15)]  # fmt: skip
        with log.open("w") as out:
            done = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"lib.stream failed:\n{log.read_text()[-3000:]}")
        return time.monotonic() - started


def visibility(warehouse: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per landed frame: its received_at and the commit time of the first snapshot that shows it (epoch s); per
    snapshot of minute_bars: its commit time and rows. Every bar of a frame shares the frame's received_at."""
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    table = cat.load_table("stocks.minute_bars")
    seen: dict[int, float] = {}
    commits, rows = [], []
    for snapshot in sorted(table.snapshots(), key=lambda s: s.timestamp_ms):
        stamps = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=("received_at",)).to_arrow()["received_at"]
        for value in set(stamps.cast("int64").to_pylist()):  # µs
            seen.setdefault(value, snapshot.timestamp_ms / 1000)
        commits.append(snapshot.timestamp_ms / 1000)
        rows.append(len(stamps))
    received = np.array(sorted(seen), dtype=np.float64) / 1e6
    visible = np.array([seen[k] for k in sorted(seen)])
    return received, visible, np.array(commits), np.array(rows)


def batch_seconds(log: Path) -> list[float]:
    """The stream's own account of each micro-batch: seconds from its start to its MERGE's commit."""
    return [float(m) for m in re.findall(r"micro-batch \d+: \d+ bars merged into minute_bars in ([0-9.]+)s", log.read_text())]


def main(quick: bool = False) -> None:
    tickers = 200 if quick else 1000
    root = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    try:
        run_stream(root / "latency", tickers, LATENCY_SPEED, LATENCY_SECONDS, root / "latency.log")
        received, visible, commits, rows = visibility(root / "latency")
        latency = visible - received
        warm = received > received.min() + JIT_WARM_UP_S
        p50, p95 = np.percentile(latency[warm], 50), np.percentile(latency[warm], 95)
        batches = batch_seconds(root / "latency.log")
        print(f"{tickers:,} symbols, a frame every {1 / LATENCY_SPEED:.1f} s: {len(received)} frames over "
              f"{received.max() - received.min():.0f} s, {rows[-1]:,} minute bars visible")  # fmt: skip
        print(f"  latency, window end to visible in minute_bars  p50 {p50:6.2f} s   p95 {p95:6.2f} s   max "
              f"{latency[warm].max():.2f} s  (after the first {JIT_WARM_UP_S:.0f} s)")  # fmt: skip
        print(f"  the same over the whole run, the JVM's warm-up included  p50 {np.percentile(latency, 50):6.2f} s   "
              f"p95 {np.percentile(latency, 95):6.2f} s")  # fmt: skip
        print(f"  micro-batch, start to commit: median of {len(batches)} {np.median(batches):6.2f} s, of the last half "
              f"{np.median(batches[len(batches) // 2 :]):6.2f} s")  # fmt: skip
        print(f"  baseline: the real feed's bar interval {BAR_INTERVAL_S:.0f} s -> p95 is {p95 / BAR_INTERVAL_S:.1%} of it "
              f"({BAR_INTERVAL_S / p95:.0f}x headroom)")  # fmt: skip

        day_seconds = 390 / THROUGHPUT_SPEED
        run_stream(root / "throughput", tickers, THROUGHPUT_SPEED, day_seconds, root / "tp.log")
        received, visible, commits, rows = visibility(root / "throughput")
        span = visible.max() - received.min()
        rate = rows[-1] / span
        from lib.simulator import bars_for_day

        day_bars = 390 * len(bars_for_day(DAY, n=tickers, adjusted=False))
        assert rows[-1] == day_bars, f"{rows[-1]:,} of the day's {day_bars:,} bars landed"
        offered = day_bars / day_seconds
        need = tickers / BAR_INTERVAL_S
        market = MARKET_SYMBOLS / BAR_INTERVAL_S
        print(f"{tickers:,} symbols, a whole day at {THROUGHPUT_SPEED:.0f} minutes a second ({offered:,.0f} bars/s offered): "
              f"{rows[-1]:,} bars visible {span:.1f} s after the first arrived, in {len(commits)} commits")  # fmt: skip
        print(f"  sustained                                      {rate:10,.0f} bars/s")
        print(f"  baseline: the real feed at {tickers:,} symbols       {need:10,.1f} bars/s -> {rate / need:,.0f}x")
        print(f"  baseline: the whole US market (~{MARKET_SYMBOLS:,})     {market:10,.1f} bars/s -> {rate / market:,.0f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
