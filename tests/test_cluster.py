"""A real Spark standalone cluster (`make cluster`'s script: a master and two one-core workers on loopback).

01_ingest (per_ticker, the executor fan-out) and 02_monthly_rollup run on it through the batch runner with
`-p spark_master`; Spark's event logs say which executor ran each task, the master's JSON status which worker
each executor lived on, and the tables must equal those of a local[*] run of the same span.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas
import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
START, DS = "2024-02-28", "2024-03-04"  # crosses a month boundary
TICKERS = 12


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def read_status(webui: int) -> dict:
    import requests

    return requests.get(f"http://127.0.0.1:{webui}/json/", timeout=10).json()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    port, webui = free_ports(2)
    env = dict(os.environ, CLUSTER_DIR=str(root / "cluster"), CLUSTER_PORT=str(port), CLUSTER_WEBUI_PORT=str(webui),
               CLUSTER_WORKERS="2", CLUSTER_WORKER_MEMORY="2g")  # fmt: skip
    started = subprocess.run(["bash", "scripts/cluster.sh", "start"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    yield {"master": f"spark://127.0.0.1:{port}", "webui": webui, "root": root}
    subprocess.run(["bash", "scripts/cluster.sh", "stop"], cwd=REPO, env=env, capture_output=True, timeout=60)


def run_steps(root: Path, *parameters: str, submit_args: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("POLYGON_API_KEY", "MASSIVE_API_KEY")}
    if submit_args:
        env["PYSPARK_SUBMIT_ARGS"] = f"{submit_args} pyspark-shell"
    command = [
        sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--start-ds", START, "--ds", DS,
        "--notebooks", "01_ingest", "02_monthly_rollup", "--runs-root", str(root / "runs"),
        "-p", "warehouse", str(root / "warehouse"), "-p", "simulator_tickers", str(TICKERS),
        "-p", "strategy", "per_ticker", *parameters,
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


def tables(warehouse: Path) -> dict:
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    frames = {}
    for name, key in (("stock_prices", ["symbol", "date"]), ("monthly_stock_prices", ["symbol", "month_start", "metric_name"])):
        frame = catalog.load_table(f"stocks.{name}").scan().to_pandas()
        if "metric_array" in frame:  # arrays as tuples, null slots as None, so frames compare cell by cell
            frame["metric_array"] = frame["metric_array"].map(lambda a: tuple(None if v != v else v for v in a))
        frames[name] = frame.sort_values(key).reset_index(drop=True)
    return frames


def tasks_per_worker(events_dir: Path, workers: dict[str, str]) -> Counter:
    """Tasks that ended, counted by the worker (its web address) of the executor that ran them."""
    counts: Counter = Counter()
    for log in events_dir.iterdir():
        executor_worker = {}
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event["Event"] == "SparkListenerExecutorAdded":
                stdout_url = event["Executor Info"]["Log Urls"]["stdout"]
                executor_worker[event["Executor ID"]] = next(w for w in workers if stdout_url.startswith(w))
            elif event["Event"] == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "Success":
                counts[executor_worker[event["Task Info"]["Executor ID"]]] += 1
    return counts


@pytest.mark.timeout(3000)
def test_ingest_and_rollup_run_on_both_workers_and_equal_a_local_run(cluster, tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    on_cluster = run_steps(
        tmp_path / "cluster", "-p", "spark_master", cluster["master"],
        submit_args=f"--conf spark.eventLog.enabled=true --conf spark.eventLog.dir={events.as_uri()}",
    )  # fmt: skip
    assert on_cluster.returncode == 0, on_cluster.stdout[-3000:] + on_cluster.stderr[-3000:]
    local = run_steps(tmp_path / "local")
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]

    status = read_status(cluster["webui"])
    workers = {worker["webuiaddress"]: worker["id"] for worker in status["workers"] if worker["state"] == "ALIVE"}
    assert len(workers) == 2, status["workers"]
    finished = [app for app in status["completedapps"] if app["name"].startswith("stocks ")]
    # One application for the run: its notebooks share one kernel and one Spark session (lib.running.kernel).
    assert len(finished) == 1, [app["name"] for app in status["completedapps"]]
    assert len(list(events.iterdir())) == 1
    counts = tasks_per_worker(events, workers)
    assert set(counts) == set(workers) and min(counts.values()) > 0, counts

    clustered, local_tables = tables(tmp_path / "cluster" / "warehouse"), tables(tmp_path / "local" / "warehouse")
    assert len(clustered["stock_prices"]) == TICKERS * 4  # four sessions: Feb 28, 29, Mar 1, Mar 4
    for name, frame in clustered.items():
        pandas.testing.assert_frame_equal(frame, local_tables[name], check_exact=True, obj=name)
