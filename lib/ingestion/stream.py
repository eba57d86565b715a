"""Real-time minute bars: the feed's minute aggregates (AM) landed in the Iceberg table minute_bars, exactly once.

    python -m lib.stream -f params/local.yaml [-p NAME VALUE ...] [--symbols AM.*] [--for-seconds N]

The hand-over from the websocket to Spark is a landing folder. A receiver thread authenticates with the key in the
`auth` action (never in the URL), subscribes, and writes every frame of events ahead to the landing folder: a file in
a staging folder, fsync, then an atomic rename into the landing folder, so Spark sees a whole frame or nothing.
A Structured Streaming query reads the folder (the file source; its checkpoint under the warehouse records which
files each micro-batch took) and MERGEs each micro-batch into minute_bars by (symbol, window_start), a later
`received_at` replacing an earlier one: a duplicate is stored once, a correction replaces the first bar, and a
micro-batch replayed after a kill changes nothing. The feed does not replay what it sent while the stream was away
(a dropped connection, a restart): each such gap is recorded in minute_bar_gaps, with the windows it may lack.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from lib.core.api_key import env_api_key, resolve_api_key
from lib.core.errors import ConfigError, StreamAuthError, StreamError, WorkspaceError
from lib.settings.command_line import add_params_arguments, config_from_args
from lib.settings.config import RunConfig

TOPIC_RE = re.compile(r"^AM\.(\*|[A-Z0-9][A-Z0-9.:\-]{0,19})$")
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.25, 30.0  # reconnect waits double from the first to the last, with jitter
AUTH_TIMEOUT_S = 30.0
TRIGGER = "1 second"  # how often the query looks for landed frames
MINUTE_MS = 60_000

log = logging.getLogger("lib.stream")


# --------------------------------------------------------------------------------------------------
# The landing folder: frames written ahead, renamed atomically
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamPaths:
    """Where the stream keeps its state, under the warehouse: landed frames, frames being written, the checkpoint."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"


def stream_paths(config: RunConfig) -> StreamPaths:
    return StreamPaths(Path(config.warehouse).resolve() / "_stream" / config.namespace / "minute_bars")


class Lander:
    """Writes frames into the landing folder: each one whole (JSON lines), durable, and visible in one rename."""

    def __init__(self, paths: StreamPaths):
        self.paths = paths
        for folder in (paths.landing, paths.staging):
            folder.mkdir(parents=True, exist_ok=True)
        for partial in paths.staging.iterdir():  # a frame being written when a run was killed: never landed
            partial.unlink(missing_ok=True)
        self._sequence = 0
        self._landing_fd = os.open(paths.landing, os.O_RDONLY)

    def land(self, lines: list[dict]) -> Path:
        self._sequence += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._sequence:08d}.json"
        staged, landed = self.paths.staging / name, self.paths.landing / name
        with open(staged, "wb") as handle:
            handle.write(b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staged, landed)  # same file system: atomic
        os.fsync(self._landing_fd)  # the rename itself survives a crash
        return landed

    def last_landed(self) -> tuple[int | None, int | None]:
        """(the newest window end, its frame's received_at in µs) of the newest landed frame; (None, None) if none."""
        names = sorted(p.name for p in self.paths.landing.glob("*.json"))
        for name in reversed(names):
            ends, received = [], None
            for line in (self.paths.landing / name).read_text().splitlines():
                record = json.loads(line)
                if record.get("ev") == "AM":
                    ends.append(int(record["e"]))
                    received = int(record["received_at_us"])
            if ends:
                return max(ends), received
        return None, None

    def close(self) -> None:
        os.close(self._landing_fd)


# --------------------------------------------------------------------------------------------------
# The websocket side
# --------------------------------------------------------------------------------------------------


def parse_topics(text: str) -> tuple[str, ...]:
    """'AM.*' or 'AM.MSFT,AM.AAPL' as a tuple of topics; a ConfigError that shows the expected form otherwise."""
    topics = tuple(t.strip() for t in str(text).split(",") if t.strip())
    bad = [t for t in topics if not TOPIC_RE.match(t)]
    if not topics or bad:
        raise ConfigError(
            f"--symbols takes minute-aggregate topics, AM.* or AM.<SYMBOL>[,AM.<SYMBOL>...] (e.g. AM.MSFT,AM.AAPL); "
            f"got {str(text)!r}{f' ({bad[0]!r} is not one)' if bad else ''}."
        )
    return topics


def _now_us() -> int:
    return time.time_ns() // 1000


class Receiver:
    """Connects, authenticates (the key in the auth action), subscribes and lands every frame of AM events, in a
    thread of its own; reconnects with exponential backoff when the connection drops, and records the gap."""

    def __init__(self, url: str, key: str, topics: tuple[str, ...], lander: Lander):
        self.url, self._key, self.topics, self.lander = url, key, topics, lander
        self.authenticated = threading.Event()
        self.error: BaseException | None = None
        self.frames = self.bars = self.gaps = self.reconnects = 0
        self._stopping = threading.Event()
        self._was_up = False  # the last connection got as far as its subscription
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="lib.stream receiver", daemon=True)
        # What came before this run (a restart after a kill): the newest window landed, when its frame arrived.
        self.last_window_end_ms, last_received_us = lander.last_landed()
        self._pending_gap = ("restart", last_received_us) if self.last_window_end_ms is not None else None

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def wait_authenticated(self, timeout_s: float = AUTH_TIMEOUT_S) -> None:
        """Return once the feed accepted the key; raise the receiver's error (StreamAuthError for a refused key)."""
        deadline = time.monotonic() + timeout_s
        while not self.authenticated.wait(0.05):
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise StreamError(f"the feed at {self.url} did not accept a connection within {timeout_s:.0f}s; "
                                  "check stream_url (empty: the simulator's feed) and that the feed is up.")  # fmt: skip

    def stop(self) -> None:
        """Close the connection and end the thread; a gap still waiting for a frame is recorded open-ended."""
        self._stopping.set()
        if self._thread.is_alive() and self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop ended meanwhile
                pass
            self._thread.join(timeout=10)
        if self._pending_gap is not None and not self._thread.is_alive():
            gap = self._gap_record(*self._pending_gap, None, _now_us())
            self._pending_gap = None
            if gap is not None:
                self.lander.land([gap])

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc

    async def _main(self) -> None:
        import aiohttp

        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        backoff = BACKOFF_FIRST_S
        async with aiohttp.ClientSession() as session:
            while not self._stopping.is_set():
                try:
                    reason = await self._connection(session)
                except StreamAuthError:
                    raise
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                    reason = f"connection failed ({type(exc).__name__}: {exc})"
                if self._stopping.is_set():
                    break
                if self._was_up:  # what the feed sends until we are back is lost to us: a gap, recorded on return
                    backoff = BACKOFF_FIRST_S
                    self._pending_gap = self._pending_gap or (reason, _now_us())
                self.reconnects += 1
                wait = backoff * random.uniform(0.8, 1.2)
                log.warning("%s; reconnecting in %.2fs. The feed does not replay what it sends meanwhile: the gap "
                            "goes to minute_bar_gaps.", reason, wait)  # fmt: skip
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _connection(self, session) -> str:
        """One connection from connect to its end; returns why it ended."""
        import aiohttp

        self._was_up = False
        async with session.ws_connect(self.url, heartbeat=30.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
            stop_task = asyncio.ensure_future(self._wake.wait())
            try:
                await self._handshake(ws)
                self._was_up = True
                while True:
                    receive = asyncio.ensure_future(ws.receive())
                    await asyncio.wait({receive, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                    if not receive.done():
                        receive.cancel()
                        await ws.close()
                        return "stopped"
                    message = receive.result()
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self._on_frame(message.data)
                    elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                                          aiohttp.WSMsgType.ERROR):  # fmt: skip
                        cause = ws.exception()
                        return f"connection lost ({cause or f'closed by the feed, code {ws.close_code}'})"
            finally:
                stop_task.cancel()

    async def _handshake(self, ws) -> None:
        connected = await ws.receive_json(timeout=AUTH_TIMEOUT_S)
        self._log_statuses(connected)
        await ws.send_str(json.dumps({"action": "auth", "params": self._key}))
        reply = await ws.receive_json(timeout=AUTH_TIMEOUT_S)
        statuses = {m.get("status"): m.get("message") for m in reply if isinstance(m, dict) and m.get("ev") == "status"}
        if "auth_failed" in statuses:
            raise StreamAuthError(
                f"the feed at {self.url} refused the key (auth_failed: {statuses['auth_failed']}). Set MASSIVE_API_KEY "
                "(or POLYGON_API_KEY) to a key whose plan includes the websocket feed; it was not retried."
            )
        if "auth_success" not in statuses:
            raise StreamError(f"the feed at {self.url} answered the auth action with {reply!r}, not auth_success.")
        self.authenticated.set()
        await ws.send_str(json.dumps({"action": "subscribe", "params": ",".join(self.topics)}))
        log.info("connected to %s, subscribed to %s", self.url, ",".join(self.topics))

    def _log_statuses(self, messages) -> None:
        for m in messages if isinstance(messages, list) else [messages]:
            if isinstance(m, dict) and m.get("ev") == "status":
                level = logging.INFO if m.get("status") in ("connected", "auth_success", "success") else logging.WARNING
                log.log(level, "feed status %s: %s", m.get("status"), m.get("message"))

    def _on_frame(self, text: str) -> None:
        received_us = _now_us()
        try:
            messages = json.loads(text)
        except ValueError:
            log.warning("a frame that is not JSON was skipped (%d characters)", len(text))
            return
        messages = messages if isinstance(messages, list) else [messages]
        self._log_statuses(messages)
        events = [m for m in messages if isinstance(m, dict) and m.get("ev") == "AM" and "s" in m and "e" in m]
        if not events:
            return
        lines = []
        newest_start = max(int(e["s"]) for e in events)
        if self._pending_gap is not None:
            gap = self._gap_record(*self._pending_gap, newest_start, received_us)
            if gap is not None:
                lines.append(gap)
            self._pending_gap = None
        lines += [{**event, "received_at_us": received_us} for event in events]
        self.lander.land(lines)
        self.frames += 1
        self.bars += len(events)
        newest_end = max(int(e["e"]) for e in events)
        self.last_window_end_ms = max(self.last_window_end_ms or newest_end, newest_end)

    def _gap_record(self, reason: str, disconnected_us: int | None, newest_start: int | None,
                    received_us: int) -> dict | None:  # fmt: skip
        """The gap between the newest window landed and `newest_start`, the first window after the return (None: no
        frame came before the stream stopped, so every later window may be missing)."""
        last = self.last_window_end_ms
        if last is None or (reason == "restart" and newest_start is not None and newest_start < last):
            return None  # nothing came before, or the feed plays an earlier stretch again (a new run of a day)
        missed = None if newest_start is None else max(0, (newest_start - last) // MINUTE_MS)
        self.gaps += 1
        if newest_start is None:
            log.warning("gap: %s; no frame came after the window ending %s before the stream stopped", reason,
                        _iso_ms(last))  # fmt: skip
        else:
            log.warning("gap: %s; up to %d minute(s) between the windows ending %s and starting %s were not received",
                        reason, missed, _iso_ms(last), _iso_ms(newest_start))  # fmt: skip
        return {
            "ev": "gap", "gap_id": uuid.uuid4().hex, "reason": reason, "disconnected_at_us": disconnected_us,
            "reconnected_at_us": received_us, "last_window_end_ms": last, "next_window_start_ms": newest_start,
            "missed_minutes": missed, "received_at_us": received_us,
        }  # fmt: skip


def _iso_ms(epoch_ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


# --------------------------------------------------------------------------------------------------
# The Spark side
# --------------------------------------------------------------------------------------------------


def landing_schema():
    """The landed JSON lines: AM events as the feed sends them plus received_at_us, and gap records (ev = gap)."""
    from pyspark.sql import types as T

    doubles = ("v", "av", "op", "vw", "o", "c", "h", "l", "a", "z")
    longs = ("s", "e", "received_at_us", "disconnected_at_us", "reconnected_at_us", "last_window_end_ms",
             "next_window_start_ms", "missed_minutes")  # fmt: skip
    return T.StructType(
        [T.StructField("ev", T.StringType()), T.StructField("sym", T.StringType())]
        + [T.StructField(name, T.DoubleType()) for name in doubles]
        + [T.StructField("otc", T.BooleanType())]
        + [T.StructField(name, T.LongType()) for name in longs]
        + [T.StructField("gap_id", T.StringType()), T.StructField("reason", T.StringType())]
    )


def minute_bar_rows(frames):
    """Landed lines (ev, sym, o, h, l, c, v, vw, s, e in epoch ms, received_at_us) -> minute_bars rows: symbol,
    window_start, window_end, open, high, low, close, volume, vwap, transactions (null: AM events carry no trade
    count), received_at; one per symbol and window_start, the latest received."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    bars = frames.filter(F.col("ev") == "AM").select(
        F.col("sym").alias("symbol"),
        F.expr("timestamp_millis(s)").alias("window_start"),
        F.expr("timestamp_millis(e)").alias("window_end"),
        F.col("o").alias("open"), F.col("h").alias("high"), F.col("l").alias("low"), F.col("c").alias("close"),
        F.col("v").alias("volume"), F.col("vw").alias("vwap"),
        F.lit(None).cast("bigint").alias("transactions"),
        F.expr("timestamp_micros(received_at_us)").alias("received_at"),
    )  # fmt: skip
    latest = Window.partitionBy("symbol", "window_start").orderBy(
        F.col("received_at").desc(), F.col("volume").desc(), F.col("close").desc()
    )
    return bars.withColumn("_rank", F.row_number().over(latest)).filter(F.col("_rank") == 1).drop("_rank")


def gap_rows(frames):
    """Landed gap records -> minute_bar_gaps rows (one per gap_id)."""
    from pyspark.sql import functions as F

    return frames.filter(F.col("ev") == "gap").dropDuplicates(["gap_id"]).select(
        "gap_id", "reason",
        F.expr("timestamp_micros(disconnected_at_us)").alias("disconnected_at"),
        F.expr("timestamp_micros(reconnected_at_us)").alias("reconnected_at"),
        F.expr("timestamp_millis(last_window_end_ms)").alias("last_window_end"),
        F.expr("timestamp_millis(next_window_start_ms)").alias("next_window_start"),
        "missed_minutes",
        F.expr("timestamp_micros(received_at_us)").alias("recorded_at"),
    )  # fmt: skip


def land_batch(config: RunConfig):
    """The foreachBatch function: MERGE a micro-batch's bars into minute_bars and its gaps into minute_bar_gaps."""
    from pyspark.sql import functions as F

    from lib.storage import catalog

    def land(batch, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch.sparkSession
        batch = batch.persist()
        try:
            bars = minute_bar_rows(batch).persist()
            text = "yyyy-MM-dd HH:mm:ss.SSSSSS"  # in the session time zone, where the MERGE reads it back
            span = bars.agg(F.count(F.lit(1)), F.date_format(F.min("window_start"), text),
                            F.date_format(F.max("window_start"), text)).first()  # fmt: skip
            count = span[0]
            if count:  # the batch's windows bound the data files the MERGE reads
                catalog.merge_latest(spark, config, "minute_bars", bars, ("symbol", "window_start"), "received_at",
                                     target_range=("window_start", span[1], span[2]))  # fmt: skip
            bars.unpersist()
            gaps = gap_rows(batch)
            if not gaps.isEmpty():
                catalog.merge_latest(spark, config, "minute_bar_gaps", gaps, ("gap_id",), "recorded_at")
        finally:
            batch.unpersist()
        log.info("micro-batch %d: %d bars merged into minute_bars in %.1fs", batch_id, count, time.monotonic() - started)

    return land


def start_query(spark, config: RunConfig, paths: StreamPaths):
    """The Structured Streaming query: the landing folder's files, micro-batch by micro-batch, into minute_bars."""
    frames = spark.readStream.schema(landing_schema()).json(str(paths.landing))
    return (
        frames.writeStream.foreachBatch(land_batch(config))
        .option("checkpointLocation", str(paths.checkpoint))
        .trigger(processingTime=TRIGGER)
        .queryName(f"minute_bars_{config.namespace}")
        .start()
    )


# --------------------------------------------------------------------------------------------------
# Recovery on start: what a kill may have left half done
# --------------------------------------------------------------------------------------------------

STREAM_TABLES = ("minute_bars", "minute_bar_gaps")  # written by every micro-batch: checked down to their data files


def _local_path(location: str) -> Path:
    """A file:/… or file:///… location of the local warehouse as a path."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(location).path)) if location.startswith("file:") else Path(location)


def _version_problem(location: str, deep: bool) -> str | None:
    """What keeps the table version at this metadata file from being read (None: it is whole): a missing or torn
    metadata file, or (deep) a missing manifest list, manifest or data file of its current snapshot."""
    path = _local_path(location)
    if not path.is_file():
        return f"its metadata file {path} is missing"
    try:
        metadata = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return f"its metadata file {path} is torn ({path.stat().st_size} bytes that are not whole JSON)"
    if not deep or metadata.get("current-snapshot-id") in (None, -1):
        return None
    # pyiceberg (heavy) reads the snapshot's manifest list and manifests the way every Iceberg reader does.
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.table import StaticTable

    table = StaticTable.from_metadata(location)
    snapshot = table.current_snapshot()
    if not _local_path(snapshot.manifest_list).is_file():
        return f"the manifest list {_local_path(snapshot.manifest_list)} of its current snapshot is missing"
    io = PyArrowFileIO()
    for manifest in snapshot.manifests(io):
        if not _local_path(manifest.manifest_path).is_file():
            return f"the manifest {_local_path(manifest.manifest_path)} of its current snapshot is missing"
        for entry in manifest.fetch_manifest_entry(io):
            if not _local_path(entry.data_file.file_path).is_file():
                return f"the data file {_local_path(entry.data_file.file_path)} of its current snapshot is missing"
    return None


def _earlier_versions(location: str, previous: str | None) -> list[str]:
    """The table's earlier metadata files, newest first: the catalog's previous pointer, then the metadata log of the
    current file (or, when that one is torn, of the previous one)."""
    earlier = [previous] if previous else []
    for source in (location, previous):
        try:
            entries = json.loads(_local_path(source).read_text()).get("metadata-log", []) if source else None
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if entries is not None:
            earlier += [e["metadata-file"] for e in sorted(entries, key=lambda e: e["timestamp-ms"], reverse=True)]
            break
    return list(dict.fromkeys(earlier))


def recover_tables(config: RunConfig, paths: StreamPaths) -> list[str]:
    """Before Spark opens the catalog: every table of the namespace must point at a whole metadata file, and the
    stream's tables at a snapshot whose files are all there. A crash of the machine can leave a version half written
    (Hadoop writes Iceberg's files without fsync, SQLite syncs the catalog's pointer to them): such a table is set back
    to its newest whole version, in one compare-and-swap of the pointer, as the JdbcCatalog commits; a table torn in
    its creation (no earlier version) is dropped from the catalog and created again by ensure_tables. When a stream
    table went back, the checkpoint is removed: the query then replays the landing folder, which MERGE makes
    idempotent. Returns one line per repair, each also logged; raises StreamError (naming the file and what to do)
    for what it cannot repair."""
    import shutil
    import sqlite3

    database = Path(config.warehouse).resolve() / "catalog.db"
    if not database.is_file():
        return []
    repairs = []
    with sqlite3.connect(database, timeout=60) as connection:
        try:
            rows = connection.execute(
                "SELECT table_name, metadata_location, previous_metadata_location FROM iceberg_tables "
                "WHERE catalog_name = ? AND table_namespace = ?", (config.catalog, config.namespace)
            ).fetchall()  # fmt: skip
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):  # the catalog was being set up when the kill came: Spark completes it
                return []
            raise StreamError(f"the Iceberg catalog {database} cannot be read ({exc}); restore it from a backup, or "
                              "move the warehouse aside and start again.") from None  # fmt: skip
        for name, location, previous in rows:
            deep = name in STREAM_TABLES
            problem = _version_problem(location, deep)
            if problem is None:
                continue
            earlier = _earlier_versions(location, previous)
            whole = next((i for i, candidate in enumerate(earlier) if _version_problem(candidate, deep) is None), None)
            table = f"{config.namespace}.{name}"
            if whole is not None:
                back, before = earlier[whole], (earlier[whole + 1] if whole + 1 < len(earlier) else None)
                changed = connection.execute(
                    "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? WHERE "
                    "catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
                    (back, before, config.catalog, config.namespace, name, location),
                ).rowcount
                if changed != 1:
                    raise StreamError(f"{table} changed while it was being repaired ({problem}); another process "
                                      "writes this warehouse: stop it, then start the stream again.")  # fmt: skip
                repairs.append(f"{table}: the last commit was cut short by a crash ({problem}); set back to the "
                               f"previous whole version {_local_path(back).name}")  # fmt: skip
            elif not earlier:  # the first version: nothing was ever stored
                connection.execute(
                    "DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? "
                    "AND metadata_location = ?", (config.catalog, config.namespace, name, location)
                )  # fmt: skip
                repairs.append(f"{table}: its creation was cut short by a crash ({problem}); it held no data and "
                               "is created again")  # fmt: skip
            else:
                raise StreamError(
                    f"{table} cannot be read: {problem}, and no earlier version of it is whole. Restore that file from "
                    f"a backup; or, to rebuild {table} from the landed frames, drop it (DROP TABLE {table}) and remove "
                    f"the checkpoint {paths.checkpoint}."
                )
            if deep and paths.checkpoint.exists():
                shutil.rmtree(paths.checkpoint)
                repairs.append(f"{table} went back: the checkpoint {paths.checkpoint} was removed, so the landed "
                               "frames are merged again (a replay changes nothing that is stored)")  # fmt: skip
    for line in repairs:
        log.warning("recovered: %s", line)
    return repairs


MISSING_FILE_RE = re.compile(r"(?:File|file)[^\n]*?((?:file:)?/[^\s,;'\"]+?)(?: does not exist|$|[\s,;'\"])")


def spark_failure(exc: BaseException, config: RunConfig, paths: StreamPaths) -> StreamError:
    """A StreamError of one line for a failure inside Spark or Iceberg: the missing file it names, and what to do."""
    java = getattr(exc, "java_exception", None)
    causes = [str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__]
    while java is not None:
        causes.append(f"{java.getClass().getSimpleName()}: {java.getMessage()}")
        java = java.getCause()
    missing = next((c for c in reversed(causes) if "NotFound" in c or "does not exist" in c), None)
    if missing is not None:
        found = MISSING_FILE_RE.search(missing)
        file = found[1] if found else missing.strip()[:300]
        return StreamError(
            f"a file of the warehouse is missing: {file}. Start the stream again: on start it sets a table whose last "
            f"commit was cut short back to its previous whole version; if this repeats, restore the file from a "
            f"backup, or remove the checkpoint {paths.checkpoint} to replay the landed frames."
        )
    return StreamError(f"the streaming query failed ({causes[-1].strip()[:300]}); start it again to resume from the "
                       f"checkpoint {paths.checkpoint}.")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StreamReport:
    url: str
    topics: tuple[str, ...]
    frames: int  # frames landed by this run
    bars: int  # AM events in them (duplicates and corrections included)
    gaps: int  # gaps recorded by this run
    reconnects: int
    rows: int  # minute_bars rows after the run
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.frames:,} frames, {self.bars:,} minute bars received from {self.url} ({','.join(self.topics)}) in "
            f"{self.seconds:.1f}s; {self.reconnects} reconnects, {self.gaps} gaps recorded in minute_bar_gaps; "
            f"minute_bars holds {self.rows:,} rows"
        )


def run_stream(config: RunConfig, topics: tuple[str, ...] = ("AM.*",), for_seconds: float | None = None,
               stop: threading.Event | None = None) -> StreamReport:  # fmt: skip
    """Stream minute bars into minute_bars until `for_seconds` have passed (None: until `stop` is set), then land
    what was received and return. An empty stream_url starts the simulator, playing the session of ds."""
    if config.env == "glue":
        raise ConfigError("lib.stream runs with env local; on Glue it would be a streaming job (see the README, "
                          "Real-time minute bars).")  # fmt: skip
    stop = stop or threading.Event()
    started = time.monotonic()
    key = resolve_api_key(not config.stream_url, config.api_key_secret_id)
    simulator = receiver = None
    try:
        url = config.stream_url
        if not url:
            from lib.simulator import SimulatorProcess

            options = {"tickers": config.simulator_tickers, "feed_day": config.ds, **config.simulator_options}
            simulator = SimulatorProcess(api_key=env_api_key() or None, **options).start()
            url = simulator.stream_url
        paths = stream_paths(config)
        lander = Lander(paths)
        receiver = Receiver(url, key, topics, lander).start()
        receiver.wait_authenticated()

        recover_tables(config, paths)
        from lib.storage import catalog
        from lib.storage.session import build_local_session

        spark = build_local_session(config.catalog, config.warehouse, app_name=f"stocks stream {config.ds}",
                                    shuffle_partitions=2, master=config.spark_master)  # fmt: skip
        try:
            catalog.ensure_tables(spark, config)
            query = start_query(spark, config, paths)
        except WorkspaceError:
            raise
        except Exception as exc:  # a Spark or Iceberg failure: one line that says what to do, not the JVM's trace
            raise spark_failure(exc, config, paths) from None
        deadline = None if for_seconds is None else started + for_seconds
        while not stop.wait(0.2) and (deadline is None or time.monotonic() < deadline):
            if receiver.error is not None:
                raise receiver.error
            if query.exception() is not None:
                raise spark_failure(query.exception(), config, paths)
        receiver.stop()
        lander.close()
        try:
            query.processAllAvailable()  # every landed frame, into the table
            query.stop()
        except Exception as exc:
            raise spark_failure(exc, config, paths) from None
        # Counted through a catalog connection of its own: this session's JdbcCatalog can hold a connection that still
        # reads catalog.db as it was when the session started (Iceberg leaves a metadata ResultSet open on it, and
        # SQLite's WAL keeps such a reader on its first snapshot). After a restart on existing tables, that pointer
        # names a metadata file that 20 commits of this run have since deleted (write.metadata.previous-versions-max).
        rows = catalog.pyiceberg_catalog(config).load_table((config.namespace, "minute_bars")).scan().count()
        return StreamReport(url, topics, receiver.frames, receiver.bars, receiver.gaps, receiver.reconnects, rows,
                            time.monotonic() - started)  # fmt: skip
    finally:
        if receiver is not None:
            receiver.stop()
        if simulator is not None:
            simulator.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.stream", description=__doc__.strip().splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--symbols", default="AM.*", help="topics: AM.* (default) or AM.MSFT,AM.AAPL")
    parser.add_argument("--for-seconds", type=float, default=None, help="stop after N seconds (default: at Ctrl-C)")
    args = parser.parse_args(argv)
    if args.for_seconds is not None and args.for_seconds <= 0:
        parser.error(f"--for-seconds must be a positive number of seconds, got {args.for_seconds}")
    try:
        args.config = config_from_args(args)
        args.topics = parse_topics(args.symbols)
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="lib.stream: %(message)s", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.ERROR)
    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        report = run_stream(args.config, args.topics, args.for_seconds, stop)
    except WorkspaceError as exc:
        print(f"python -m lib.stream: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(report.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
