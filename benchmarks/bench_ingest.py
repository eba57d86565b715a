"""Ingestion: per_ticker calls/min through fetch_bars against a seed-style baseline, call counts, the rate cap.

Against the bundled simulator (its own process, 20 ms latency, 11,000 tickers), one market day:

1. call counts of grouped, range, per_ticker and auto for one day and one year (no HTTP);
2. per_ticker through the notebook's code path: `fanout.fetch_bars` on Spark local[*] (async client in
   mapPartitions), at the default concurrency and higher;
3. the seed-style baseline in the same run: sequential `requests.get` in a Python UDF over 4 partitions,
   one call at a time, on a subset;
4. the async client alone on the driver (no Spark), the client's ceiling;
5. the simulator's CPU while serving (one core: if it is near 100 %, the server is the bottleneck);
6. the rate cap: `max_calls_per_minute=6000` through fetch_bars for ~30 s, held within ±5 %.

    .venv/bin/python -m benchmarks bench_ingest [--quick]
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import time

DAY = dt.date(2024, 3, 28)
LATENCY_MS = 20
CAP_PER_MINUTE = 6000
TARGET_PER_MINUTE = 300_000  # per_ticker through fetch_bars on this 2-core machine (issue #3)
REPEATS = 3


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<58} {value:>14}  {note}")


def call_count_table(tickers: int) -> None:
    from lib.ingestion import fanout

    print(f"\nCalls per strategy ({tickers:,} tickers; bar calls, plus {math.ceil(tickers / 1000)} ticker pages of 1,000)")
    for label, days in (("one market day", 1), ("one year (252 market days)", 252)):
        counts = fanout.call_counts(days, tickers)
        auto, _ = fanout.choose_strategy("auto", days, tickers)
        _row(f"{label}: grouped / range / per_ticker",
             f"{counts['grouped']:,} / {counts['range']:,} / {counts['per_ticker']:,}")  # fmt: skip
        _row(f"{label}: auto", f"{counts[auto]:,}", f"(chose {auto})")


def baseline_udf(spark, base_url: str, symbols: list[str]) -> tuple[int, float]:
    """The seed's pattern: one requests.get per row in a Python UDF, 4 partitions, no session, no concurrency."""
    import requests
    from pyspark.sql import functions as F

    day = DAY.isoformat()

    @F.udf("string")
    def fetch(symbol):
        response = requests.get(f"{base_url}/v1/open-close/{symbol}/{day}",
                                headers={"Authorization": "Bearer bench"}, timeout=30)  # fmt: skip
        return response.text

    frame = spark.createDataFrame([(s,) for s in symbols], "symbol string").repartition(4)
    started = time.monotonic()
    rows = frame.select(fetch("symbol").alias("body")).localCheckpoint(eager=True).count()
    return rows, time.monotonic() - started


def client_alone(base_url: str, symbols: list[str], concurrency: int) -> tuple[int, float]:
    from lib.ingestion import async_client, fanout
    from lib.ingestion.rest_client import ClientSettings

    settings = ClientSettings(base_url=base_url, api_key="bench")
    tasks = fanout.plan_tasks("per_ticker", [DAY], symbols)
    started = time.monotonic()
    _, calls, _ = async_client.run(fanout.fetch_tasks(settings, tasks, True, concurrency))
    return sum(calls.values()), time.monotonic() - started


def _rate_while_all_partitions_ran(result, symbols: list[str]) -> float:
    """Answers per minute between the last partition's first answer and the first partition's last one
    (fetch_bars deals the tasks to the partitions round-robin)."""
    answers = result.raw_bars.select("symbol", "received_at").toPandas()
    slice_of = {s: i % result.partitions for i, s in enumerate(symbols)}
    answers["partition"] = answers["symbol"].map(slice_of)
    spans = answers.groupby("partition")["received_at"].agg(["min", "max"])
    start, end = spans["min"].max(), spans["max"].min()
    inside = answers[(answers["received_at"] >= start) & (answers["received_at"] <= end)]
    seconds = (end - start).total_seconds()
    return 60 * (len(inside) - 1) / seconds if seconds > 0 else float("nan")


def main(quick: bool = False) -> None:
    from lib.ingestion import fanout
    from lib.ingestion.rest_client import ClientSettings
    from lib.settings.config import DEFAULT_CONCURRENCY
    from lib.simulator import SimulatorProcess, universe
    from lib.storage.session import build_local_session

    tickers = 2_000 if quick else 11_000
    baseline_calls = 100 if quick else 400
    cap_seconds = 10 if quick else 30
    call_count_table(11_000)

    warehouse = tempfile.mkdtemp(prefix="bench-ingest-")
    spark = build_local_session("local", warehouse, app_name="bench_ingest", shuffle_partitions=2)
    symbols = [r["ticker"] for r in universe(tickers, 42)]
    per_ticker = fanout.plan_tasks("per_ticker", [DAY], symbols)
    figures: dict[str, float] = {}
    try:
        with SimulatorProcess(tickers=tickers, latency_ms=LATENCY_MS) as sim:
            settings = ClientSettings(base_url=sim.base_url, api_key="bench")
            server_pid = sim._process.pid
            print(f"\nper_ticker, one day, {tickers:,} tickers, simulator latency {LATENCY_MS} ms, "
                  f"Spark {spark.sparkContext.master} ({spark.sparkContext.defaultParallelism} slots), "
                  f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
            fanout.fetch_bars(spark, settings, per_ticker[:200], concurrency=16, progress=False)  # warm-up

            for concurrency in (64, 128, 256):
                # The median of REPEATS fan-outs: one takes 2-3 s, so a single run is at the mercy of a hiccup.
                runs = []
                for _ in range(REPEATS):
                    server_cpu = _cpu_seconds(server_pid)
                    run = fanout.fetch_bars(spark, settings, per_ticker, concurrency=concurrency, progress=False)
                    runs.append((run.seconds, (_cpu_seconds(server_pid) - server_cpu) / run.seconds, run))
                    assert run.failures.count() == 0 and run.total_calls == len(per_ticker)
                _, server_busy, result = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
                figures[f"fetch_bars_{concurrency}"] = result.calls_per_minute
                client_us = 1e6 * result.executor_cpu_seconds / result.total_calls
                _row(f"fetch_bars per_ticker, {result.partitions} partitions x {concurrency} in flight",
                     f"{result.calls_per_minute:,.0f}/min",
                     f"{result.total_calls:,} calls in {result.seconds:.2f}s (median of {REPEATS}); "
                     f"client CPU {client_us:.0f} us/call; "
                     f"simulator CPU {server_busy:.0%} of a core "
                     f"({1e6 * server_busy * result.seconds / result.total_calls:.0f} us/request)")  # fmt: skip

            rows, seconds = baseline_udf(spark, sim.base_url, symbols[:baseline_calls])
            figures["baseline"] = 60 * rows / seconds
            _row("baseline: sequential requests in a UDF, 4 partitions",
                 f"{figures['baseline']:,.0f}/min", f"{rows} calls in {seconds:.2f}s")  # fmt: skip

            server_cpu = _cpu_seconds(server_pid)
            calls, seconds = client_alone(sim.base_url, symbols, 256)
            server_busy = (_cpu_seconds(server_pid) - server_cpu) / seconds
            _row("async client alone on the driver, 256 in flight (no Spark)", f"{60 * calls / seconds:,.0f}/min",
                 f"{calls:,} calls in {seconds:.2f}s; simulator CPU {server_busy:.0%} of a core")  # fmt: skip

            best = max(v for k, v in figures.items() if k.startswith("fetch_bars"))
            default = figures[f"fetch_bars_{DEFAULT_CONCURRENCY}"]
            print("\nper_ticker against the baseline")
            _row(f"fetch_bars at the default concurrency ({DEFAULT_CONCURRENCY}) / baseline",
                 f"{default / figures['baseline']:.1f}x")
            _row("best fetch_bars / baseline", f"{best / figures['baseline']:.1f}x")
            met = "yes" if default >= TARGET_PER_MINUTE else "NO"
            # The target is for 11,000 calls: a --quick fan-out is too short to amortise the Spark job's start.
            _row(f"default concurrency at least {TARGET_PER_MINUTE:,}/min", "n/a (--quick)" if quick else met)

            cap_calls = int(CAP_PER_MINUTE * cap_seconds / 60)
            capped = ClientSettings(base_url=sim.base_url, api_key="bench", max_calls_per_minute=CAP_PER_MINUTE)
            fanout.fetch_bars(spark, capped, per_ticker[:20], concurrency=4, progress=False)  # warm the workers
            result = fanout.fetch_bars(spark, capped, per_ticker[:cap_calls], concurrency=64, progress=False)
            # Bars are stamped when their answer arrives: the spacing of the answers is the spacing of the calls.
            window = result.raw_bars.selectExpr("min(received_at) AS first", "max(received_at) AS last",
                                                "count(*) AS answers").first()  # fmt: skip
            span = (window["last"] - window["first"]).total_seconds()
            paced = 60 * (window["answers"] - 1) / span
            print(f"\nRate cap max_calls_per_minute={CAP_PER_MINUTE:,} through fetch_bars ({result.partitions} partitions)")
            answers = f"{window['answers']:,} bars of {result.total_calls:,} calls, {span:.1f}s"
            _row("calls/min from first to last answer", f"{paced:,.0f}/min",
                 f"{paced / CAP_PER_MINUTE - 1:+.1%} ({answers})")  # fmt: skip
            _row("calls/min over the whole fan-out (Spark job overhead included)",
                 f"{result.calls_per_minute:,.0f}/min", f"{result.calls_per_minute / CAP_PER_MINUTE - 1:+.1%}")
            overlap = _rate_while_all_partitions_ran(result, symbols[:cap_calls])
            _row("calls/min while every partition was running", f"{overlap:,.0f}/min",
                 f"{overlap / CAP_PER_MINUTE - 1:+.1%}")
            held = abs(paced / CAP_PER_MINUTE - 1) <= 0.05
            _row("held within +-5 %", "yes" if held else "NO")
    finally:
        spark.stop()
