"""The websocket feed and lib.stream against it: a real server (the simulator's), real Spark, real Iceberg.

What lands is compared with the simulator's pure functions (`feed_frames`, `minute_bars`), never with the stream's
own logic: the frames a client received, folded so that a later copy of a window replaces an earlier one, must be
exactly the rows of minute_bars; every frame not received lies inside a gap recorded in minute_bar_gaps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pandas as pd
import pytest

from lib.simulator import SimulatorProcess, bars_for_day, feed_frames, minute_bars

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2024, 3, 28)
TICKERS = 4
KEY = "canary-stream-5d1e0c9b7a-do-not-leak"
AM_FIELDS = {"ev", "sym", "v", "av", "op", "vw", "o", "c", "h", "l", "a", "z", "s", "e", "otc"}
VALUES = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vw": "vwap"}
FAULTS = {"feed_duplicate_rate": 0.05, "feed_correct_rate": 0.05}


def feed(**options) -> SimulatorProcess:
    options = {"feed_day": DAY, **options}
    return SimulatorProcess(tickers=TICKERS, api_key=KEY, **options)


def stream_command(warehouse: Path, url: str, for_seconds: float, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lib.stream", "-f", "params/local.yaml", "-p", "warehouse", str(warehouse),
            "-p", "ds", str(DAY), "-p", "start_ds", str(DAY), "-p", "stream_url", url,
            "--for-seconds", str(for_seconds), *extra]  # fmt: skip


def stream_env(key: str = KEY) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MASSIVE_API_KEY", "POLYGON_API_KEY")}
    return env | {"MASSIVE_API_KEY": key, "PYTHONPATH": str(REPO), "SPARK_DRIVER_MEMORY": "1g"}


def run_stream(warehouse: Path, url: str, for_seconds: float, key: str = KEY, timeout: float = 420):
    return subprocess.run(stream_command(warehouse, url, for_seconds), cwd=REPO, env=stream_env(key),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def table(warehouse: Path, name: str) -> pd.DataFrame:
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    return cat.load_table(f"stocks.{name}").scan().to_pandas()


def epoch_ms(column: pd.Series) -> pd.Series:
    return (column - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)


def fold(frames: list[list[dict]], received: list[int]) -> dict[tuple[str, int], dict]:
    """What a client that received these frames (in order) knows: the last copy of each (symbol, window start)."""
    known: dict[tuple[str, int], dict] = {}
    for minute in received:
        for event in frames[minute]:
            known[(event["sym"], event["s"])] = event
    return known


def check_landed(warehouse: Path, frames: list[list[dict]], first: int = 0) -> tuple[list[int], pd.DataFrame]:
    """minute_bars is exactly the fold of the frames from minute `first` on outside the recorded gaps; returns those
    minutes and the gaps."""
    rows = table(warehouse, "minute_bars")
    gaps = table(warehouse, "minute_bar_gaps")
    assert not rows.duplicated(["symbol", "window_start"]).any(), "a (symbol, window_start) stored twice"
    # A gap that no frame closed (the stream stopped first) has no next_window_start: every later window may be lost.
    ends = epoch_ms(gaps["last_window_end"]).tolist()
    starts = epoch_ms(gaps["next_window_start"].fillna(pd.Timestamp.max.tz_localize("UTC"))).tolist()
    lost = list(zip(ends, starts, strict=True))
    start_of = [frame[0]["s"] for frame in frames]  # a frame's first events are its own minute's bars
    received = [m for m in range(first, len(frames)) if not any(end <= start_of[m] < nxt for end, nxt in lost)]
    expected = fold(frames, received)
    stored = {(r.symbol, int(s)): r for r, s in zip(rows.itertuples(), epoch_ms(rows["window_start"]), strict=True)}
    assert set(stored) == set(expected), (
        f"{len(set(expected) - set(stored))} bars received but not stored, {len(set(stored) - set(expected))} stored "
        f"but not sent outside the gaps {lost}"
    )
    for key, event in expected.items():
        row = stored[key]
        assert {v: getattr(row, column) for v, column in VALUES.items()} == {v: event[v] for v in VALUES}, key
        assert epoch_ms(pd.Series([row.window_end]))[0] == event["e"]
    return received, gaps


# --------------------------------------------------------------------------------------------------
# The simulator's feed: pure functions and protocol
# --------------------------------------------------------------------------------------------------


def test_minute_bars_add_up_to_the_daily_bar():
    daily = {b["T"]: b for b in bars_for_day(DAY, n=30, adjusted=False)}
    bars = pd.DataFrame(minute_bars(DAY, n=30))
    assert len(bars) == 30 * 390 and set(bars.columns) == AM_FIELDS
    day = bars.groupby("sym").agg(v=("v", "sum"), h=("h", "max"), l=("l", "min"), o=("o", "first"), c=("c", "last"))
    for symbol, row in day.iterrows():
        expected = daily[symbol]
        assert (row.v, row.h, row.l, row.o, row.c) == (expected["v"], expected["h"], expected["l"], expected["o"],
                                                       expected["c"]), symbol  # fmt: skip
    assert (bars["l"] <= bars[["o", "c"]].min(axis=1)).all() and (bars["h"] >= bars[["o", "c"]].max(axis=1)).all()
    assert ((bars["e"] - bars["s"]) == 60_000).all()
    first = dt.datetime(2024, 3, 28, 13, 30, tzinfo=dt.UTC)  # 09:30 New York (EDT)
    assert bars["s"].min() == first.timestamp() * 1000


def test_feed_faults_resolve_to_the_minute_bars():
    frames = feed_frames(DAY, n=TICKERS, **{k.removeprefix("feed_"): v for k, v in FAULTS.items()})
    final = fold(frames, list(range(len(frames))))
    assert final == {(b["sym"], b["s"]): b for b in minute_bars(DAY, n=TICKERS)}
    sent = sum(len(f) for f in frames)
    assert sent > TICKERS * 390 + 20, "no duplicate or correction was drawn"
    assert any(e != final[(e["sym"], e["s"])] for frame in frames for e in frame), "no bar was sent first with wrong values"


async def _session(url: str, key: str, topics: str | None, frames: int = 1) -> list:
    """Messages of one connection: the greeting, the auth answer, the subscription answer and `frames` frames."""
    messages = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        messages.append(await ws.receive_json(timeout=10))
        await ws.send_json({"action": "auth", "params": key})
        messages.append(await ws.receive_json(timeout=10))
        if messages[-1][0]["status"] != "auth_success":
            closed = await ws.receive(timeout=10)
            messages.append(closed.type)
            return messages
        await ws.send_json({"action": "subscribe", "params": topics})
        for _ in range(frames + 1):
            messages.append(await ws.receive_json(timeout=20))
    return messages


def test_feed_speaks_massives_protocol_and_refuses_a_wrong_key():
    with feed(feed_minutes_per_second=50, feed_refuse_key="refused-key") as sim:
        assert sim.stream_url.startswith("ws://127.0.0.1:") and sim.stream_url.endswith("/stocks")
        symbols = [b["T"] for b in bars_for_day(DAY, n=TICKERS, adjusted=False)][:2]
        hello, auth, subscribed, frame = asyncio.run(_session(sim.stream_url, KEY, f"AM.{symbols[0]},AM.{symbols[1]}"))
        assert hello == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
        assert auth == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
        assert subscribed == [{"ev": "status", "status": "success", "message": f"subscribed to: AM.{s}"} for s in symbols]
        assert sorted(e["sym"] for e in frame) == sorted(symbols)
        assert all(set(e) == AM_FIELDS and e["ev"] == "AM" and e["otc"] is False for e in frame)
        first = {(b["sym"], b["s"]): b for b in minute_bars(DAY, n=TICKERS)}
        assert all(first[(e["sym"], e["s"])] == e for e in frame)
        for wrong in ("another-key", "refused-key", ""):
            _, refused, closed = asyncio.run(_session(sim.stream_url, wrong, None))
            assert refused == [{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]
            assert closed in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert KEY not in sim.stderr_tail


@pytest.mark.parametrize("package", ["massive", "polygon"])
def test_official_massive_client_parses_the_feed(package):
    """Both official clients: massive 2.9.1 and polygon-api-client 1.16.3 (its name before the rename)."""
    import importlib

    WebSocketClient = importlib.import_module(package).WebSocketClient
    EquityAgg = importlib.import_module(f"{package}.websocket.models").EquityAgg

    with feed(feed_minutes_per_second=100) as sim:
        host = sim.stream_url.removeprefix("ws://").removesuffix("/stocks")
        client = WebSocketClient(api_key=KEY, feed=host, secure=False, subscriptions=["AM.*"], max_reconnects=0)
        received: list = []

        async def handle(messages):
            received.extend(messages)
            if len(received) >= 3 * TICKERS:
                await client.close()

        asyncio.run(asyncio.wait_for(client.connect(handle), timeout=30))
    expected = {(b["sym"], b["s"]): b for b in minute_bars(DAY, n=TICKERS)}
    assert len(received) >= 3 * TICKERS and all(isinstance(m, EquityAgg) for m in received)
    for agg in received:
        bar = expected[(agg.symbol, agg.start_timestamp)]
        assert (agg.event_type, agg.open, agg.high, agg.low, agg.close, agg.volume, agg.vwap, agg.end_timestamp,
                agg.accumulated_volume, agg.aggregate_vwap, agg.average_size, agg.official_open_price, agg.otc) == (
            "AM", bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["vw"], bar["e"], bar["av"], bar["a"], bar["z"],
            bar["op"], False)  # fmt: skip


def test_stream_stops_at_once_on_a_refused_key(tmp_path):
    with feed() as sim:
        started = time.monotonic()
        done = run_stream(tmp_path / "warehouse", sim.stream_url, 30, key="not-" + KEY, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "StreamAuthError" in done.stderr and "refused the key (auth_failed" in done.stderr
    assert "MASSIVE_API_KEY" in done.stderr and "not retried" in done.stderr
    assert time.monotonic() - started < 60, "a refused key is not retried and starts no Spark"
    assert KEY not in done.stdout + done.stderr


def test_stream_refuses_a_bad_subscription(tmp_path):
    command = stream_command(tmp_path / "warehouse", "ws://127.0.0.1:1/stocks", 5, "--symbols", "T.MSFT")
    done = subprocess.run(command, cwd=REPO, env=stream_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "AM.* or AM.<SYMBOL>" in done.stderr


# --------------------------------------------------------------------------------------------------
# lib.stream end to end: a day through the faults, and a kill
# --------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_day_lands_exactly_once_through_drops_duplicates_and_corrections(tmp_path):
    warehouse = tmp_path / "warehouse"
    speed = 30
    with feed(feed_minutes_per_second=speed, feed_drops="60,200", **FAULTS) as sim:
        done = run_stream(warehouse, sim.stream_url, 390 / speed + 6)
    assert done.returncode == 0, done.stderr[-3000:]
    frames = feed_frames(DAY, n=TICKERS, duplicate_rate=0.05, correct_rate=0.05)
    received, gaps = check_landed(warehouse, frames)
    assert len(gaps) == 2 and gaps["reason"].str.startswith("connection lost").all(), gaps
    assert (gaps["missed_minutes"] >= 1).all() and 60 not in [m for m in range(390) if m not in received]
    assert 300 < len(received) < 390, "the drops lost some minutes and only those"
    assert sum(len(frames[m]) for m in received) > TICKERS * len(received), "no duplicate or correction came"
    landed = Path(warehouse / "_stream" / "stocks" / "minute_bars" / "landing")
    assert KEY not in done.stdout + done.stderr
    assert not any(KEY in p.read_text() for p in landed.iterdir())
    assert "2 gaps recorded" in done.stdout


class StreamRun:
    """One `python -m lib.stream` in a process group of its own (its Spark JVM with it), and what it wrote."""

    def __init__(self, warehouse: Path, url: str, log: Path):
        self.warehouse, self.log = warehouse, log
        self.state = warehouse / "_stream" / "stocks" / "minute_bars" / "checkpoint"
        self.metadata = warehouse / "stocks" / "minute_bars" / "metadata"
        self.seen = self.files()  # what earlier runs left: a moment is a new file of this run
        self.started = time.monotonic()
        self.process = subprocess.Popen(stream_command(warehouse, url, 900), cwd=REPO, env=stream_env(),
                                        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def files(self) -> dict[str, set[str]]:
        def names(folder: Path, pattern: str) -> set[str]:
            return {p.name for p in folder.glob(pattern)} if folder.is_dir() else set()

        return {"tables": names(self.warehouse / "stocks", "*"), "offsets": names(self.state / "offsets", "[0-9]*"),
                "commits": names(self.state / "commits", "[0-9]*"), "manifest lists": names(self.metadata, "snap-*"),
                "metadata": names(self.metadata, "*.metadata.json")}  # fmt: skip

    def new(self, kind: str) -> int:
        return len(self.files()[kind] - self.seen[kind])

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, whole_group: bool) -> None:
        """SIGKILL: the driver alone (its JVM then exits by itself) or with its JVM, as a container stop does."""
        if whole_group:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)


# The moments of a stream's life when the kill test kills it, in order: what must have happened in this run (a file
# count that grew by at least n, or seconds since the start), then a random wait up to `jitter` seconds.
KILL_MOMENTS = (
    ("the JVM starting", "seconds", 0.5, 2.5),
    ("the tables being created", "tables", 1, 2.0),
    ("a micro-batch planned", "offsets", 1, 1.5),
    ("a commit: its manifest list written", "manifest lists", 1, 0.0),
    ("between micro-batches", "commits", 1, 0.0),
    ("a commit: its metadata file written", "metadata", 1, 0.0),
    ("a micro-batch running", "offsets", 2, 1.5),
    ("steady state", "commits", 2, 3.0),
)
MOMENT_WAIT_S = 90  # a moment not reached by then (the day over, a slow machine): the kill falls there anyway


@pytest.mark.e2e
def test_a_stream_killed_at_any_moment_restarts_by_itself_without_loss_or_duplicates(tmp_path):
    """Eight SIGKILLs across the life of the stream (the JVM starting, the tables being created, a micro-batch planned,
    mid-commit, between batches), each restart on the same warehouse; the last run plays the day out. Every restart
    must come up by itself, and minute_bars must hold each bar the feed delivered exactly once, outside the gaps."""
    import random

    warehouse = tmp_path / "warehouse"
    rng = random.Random(os.environ.get("STREAM_KILL_SEED", time.time_ns()))
    speed = 2  # the day lasts 195 s: most kills fall while it plays
    kills, clock_started = [], None
    with feed(feed_minutes_per_second=speed, **FAULTS) as sim:
        for number, (moment, kind, threshold, jitter) in enumerate(KILL_MOMENTS):
            run = StreamRun(warehouse, sim.stream_url, tmp_path / f"run-{number}.log")
            try:
                while (time.monotonic() - run.started < threshold) if kind == "seconds" else run.new(kind) < threshold:
                    died = f"the restart after {kills} died before {moment} (exit {run.process.returncode})"
                    assert run.process.poll() is None, f"{died}:\n{run.output()[-4000:]}"
                    if time.monotonic() - run.started > MOMENT_WAIT_S:
                        moment += " (not reached)"
                        break
                    time.sleep(0.02)
                    if clock_started is None and "feed: playing" in sim.stderr_tail:
                        clock_started = time.monotonic()
                time.sleep(rng.uniform(0, jitter))
                assert run.process.poll() is None, f"the run died by itself before its kill:\n{run.output()[-4000:]}"
            finally:
                whole_group = number % 2 == 1
                run.kill(whole_group)
            kills.append(f"{moment} at {time.monotonic() - run.started:.1f}s{' with its JVM' if whole_group else ''}")
        assert clock_started is not None, sim.stderr_tail
        remaining = max(0.0, 390 / speed - (time.monotonic() - clock_started))
        last = run_stream(warehouse, sim.stream_url, remaining + 8, timeout=600)
    assert last.returncode == 0, f"the restart after {kills} failed:\n{last.stderr[-4000:]}"
    assert "Traceback" not in last.stderr and "Py4JJavaError" not in last.stderr, last.stderr[-4000:]
    frames = feed_frames(DAY, n=TICKERS, duplicate_rate=0.05, correct_rate=0.05)
    # A run killed after its subscription but before its first frame landed leaves nothing a restart could measure a
    # gap from: the check starts at the first frame that landed (the oldest file of the landing folder).
    landing = sorted((warehouse / "_stream" / "stocks" / "minute_bars" / "landing").glob("*.json"))
    first_landed = json.loads(landing[0].read_text().splitlines()[0])["s"]
    first = next(m for m, frame in enumerate(frames) if frame[0]["s"] == first_landed)
    assert first <= 10, f"the first frame landed was minute {first}: the first runs lost the start of the day"
    received, gaps = check_landed(warehouse, frames, first)
    assert set(gaps["reason"]) <= {"restart"}, gaps
    assert 100 < len(received) < 390 and received[-1] == 389, (kills, len(received))
    assert KEY not in last.stdout + last.stderr


def _minute_bars_table(warehouse: Path, versions: int):
    """A real catalog.db and minute_bars (pyiceberg's SqlCatalog, the same JDBC layout) with `versions` appends."""
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse.mkdir(parents=True, exist_ok=True)
    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    cat.create_namespace("stocks")
    rows = pa.table({"symbol": pa.array(["A"], pa.string()), "close": pa.array([1.0], pa.float64())})
    table = cat.create_table("stocks.minute_bars", rows.schema)
    for _ in range(versions):
        table.append(rows)
    return cat, table


def test_a_torn_last_commit_is_set_back_to_the_previous_whole_version(tmp_path):
    """What a crash of the machine can leave (Hadoop writes Iceberg's files without fsync, SQLite's pointer is
    synced): the current metadata file torn, or a file of the current snapshot gone. The start-up check sets the
    table back to its newest whole version, says so in one line, and removes the checkpoint so the landed frames are
    merged again."""
    from lib.core.errors import StreamError
    from lib.ingestion.stream import recover_tables, stream_paths
    from lib.settings.command_line import command_line_params
    from lib.settings.config import RunConfig

    warehouse = tmp_path / "warehouse"
    config = RunConfig.from_params(**command_line_params(str(REPO / "params/local.yaml"), [["warehouse", str(warehouse)]]))
    paths = stream_paths(config)
    cat, table = _minute_bars_table(warehouse, versions=3)
    paths.checkpoint.mkdir(parents=True)
    assert recover_tables(config, paths) == [] and paths.checkpoint.is_dir(), "a whole table is left alone"

    current = Path(table.metadata_location.removeprefix("file://"))
    current.write_text(current.read_text()[:200])  # torn: not whole JSON
    repairs = recover_tables(config, paths)
    assert len(repairs) == 2 and "set back to the previous whole version" in repairs[0] and current.name in repairs[0]
    assert not paths.checkpoint.exists() and recover_tables(config, paths) == []
    assert len(cat.load_table("stocks.minute_bars").scan().to_arrow()) == 2  # the version before the third append

    manifest_list = Path(cat.load_table("stocks.minute_bars").current_snapshot().manifest_list.removeprefix("file://"))
    manifest_list.unlink()
    assert "manifest list" in recover_tables(config, paths)[0]
    assert len(cat.load_table("stocks.minute_bars").scan().to_arrow()) == 1

    for metadata in (warehouse / "stocks" / "minute_bars" / "metadata").glob("*.metadata.json"):
        metadata.unlink()  # nothing whole left of a table that held data: one line that names the file and what to do
    with pytest.raises(StreamError, match=r"stocks.minute_bars cannot be read: its metadata file .* is missing.*DROP") as info:
        recover_tables(config, paths)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# The pieces in Spark: the micro-batch transform and the quality check
# --------------------------------------------------------------------------------------------------


def test_a_micro_batch_keeps_the_latest_copy_of_each_window(spark):
    from lib.ingestion.stream import landing_schema, minute_bar_rows

    def line(symbol, start, close, received, ev="AM"):
        return {"ev": ev, "sym": symbol, "o": 10.0, "h": 11.0, "l": 9.0, "c": close, "v": 100.0, "vw": 10.0,
                "s": start, "e": start + 60_000, "received_at_us": received}  # fmt: skip

    frames = spark.createDataFrame(
        [line("A", 0, 10.5, 1), line("A", 0, 10.7, 3), line("A", 0, 10.6, 2), line("A", 60_000, 10.1, 1),
         line("B", 0, 10.2, 1), line("B", 0, 10.2, 2), line("A", 0, 99.0, 9, ev="gap")],
        landing_schema(),
    )  # fmt: skip
    rows = {(r.symbol, r.window_start.timestamp()): r for r in minute_bar_rows(frames).collect()}
    assert set(rows) == {("A", 0.0), ("A", 60.0), ("B", 0.0)}
    assert rows[("A", 0.0)].close == 10.7 and rows[("A", 0.0)].received_at.timestamp() == 3e-6
    assert rows[("B", 0.0)].received_at.timestamp() == 2e-6 and rows[("A", 0.0)].transactions is None


def test_minute_bars_vs_daily_flags_a_day_short_of_its_volume(spark):
    from pyspark.sql import types as T

    from lib.quality import checks
    from lib.storage.catalog import SCHEMAS

    start = dt.datetime(2024, 3, 28, 13, 30, tzinfo=dt.UTC)  # 09:30 New York
    minute = dt.timedelta(minutes=1)
    bars = [("A", start, start + minute, 10.0, 12.0, 9.0, 11.0, 600.0, 10.5, None, start),
            ("A", start + minute, start + 2 * minute, 11.0, 11.5, 10.0, 10.5, 400.0, 10.8, None, start),
            ("B", start, start + minute, 5.0, 5.0, 5.0, 5.0, 100.0, 5.0, None, start)]  # fmt: skip
    daily_schema = T.StructType([T.StructField(n, t) for n, t in (("symbol", T.StringType()), ("date", T.DateType()),
                                ("volume", T.DoubleType()), ("high", T.DoubleType()), ("low", T.DoubleType()))])  # fmt: skip
    daily = spark.createDataFrame([("A", DAY, 1000.0, 12.0, 9.0), ("B", DAY, 150.0, 5.0, 5.0)], daily_schema)
    inputs = checks.QualityInputs(minute_bars=spark.createDataFrame(bars, SCHEMAS["minute_bars"]), stock_prices=daily)
    [result] = checks.run_checks(inputs, DAY, [DAY], {"minute_daily_tolerance": 0.01}, only=["minute_bars_vs_daily"])
    assert (result.table_name, result.severity, result.status, result.failed_rows) == ("minute_bars", "warn", "fail", 1)
    assert "B 2024-03-28 (volume 100 of 150)" in result.details
    checks.release([result])
