"""Write, audit, publish: a run stages its market data on an Iceberg branch, the gate decides, main only gets audited data.

Real Spark, real Iceberg tables in the SQLite catalog, the simulator over HTTP. Expected rows come from the
simulator's pure functions (lib.simulator.bar), and main's state is read back through pyiceberg, not through the code
under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.core.trading_days import trading_days
from lib.simulator import universe
from tests.test_reliability import clean_env, expected_prices

REPO = Path(__file__).resolve().parent.parent
TICKERS = 6
MARKET = ("stock_tickers", "securities", "corporate_actions", "raw_daily_bars", "stock_prices", "monthly_stock_prices")
BASE = ("2024-03-01", "2024-03-05")  # published directly (no branch) before each scenario


class Lake:
    """One scenario's tables: the session's warehouse (the spark fixture's catalog), a namespace of its own."""

    def __init__(self, warehouse: Path, namespace: str, runs: Path):
        self.warehouse, self.namespace, self.runs = warehouse, namespace, runs


def _config(lake: Lake, ds: str, start_ds: str | None = None, **extra):
    from lib.settings.config import RunConfig

    return RunConfig.from_params(ds=ds, start_ds=start_ds or ds, warehouse=str(lake.warehouse), namespace=lake.namespace,
                                 simulator_tickers=TICKERS, strategy="grouped", run_dir=str(lake.runs / ds),
                                 **extra)  # fmt: skip


def _stage(spark, config):
    """01_ingest and 02_monthly_rollup of the run (on its branch when config.wap_branch is set)."""
    from lib.running import runtime, steps

    source = runtime.open_data_source(config)
    try:
        steps.run_ingest(spark, config, source.settings)
    finally:
        source.stop()
    steps.run_rollup(spark, config)


def _audit_and_publish(spark, config):
    from lib.running import steps

    return steps.publish(spark, config, steps.run_quality(spark, config))


def _table(lake: Lake, name: str):
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("local", uri=f"sqlite:///{lake.warehouse / 'catalog.db'}", warehouse=lake.warehouse.as_uri())
    return cat.load_table(f"{lake.namespace}.{name}")


def _main_state(lake: Lake) -> dict[str, tuple[int | None, int]]:
    """Per table of market data: main's current snapshot id and the length of its snapshot log (pyiceberg)."""
    state = {}
    for name in MARKET:
        metadata = _table(lake, name).metadata
        state[name] = (metadata.current_snapshot_id, len(metadata.snapshot_log))
    return state


def _refs(lake: Lake, name: str) -> set[str]:
    return set(_table(lake, name).metadata.refs)


def _main_rows(lake: Lake, name: str):
    return _table(lake, name).scan().to_pandas()


def _assert_main_holds(warehouse: Lake, start: str, ds: str) -> None:
    """stock_prices on main equals the simulator's bars for start..ds, once each; the monthly arrays agree."""
    symbols = [r["ticker"] for r in universe(TICKERS)]
    days = trading_days(dt.date.fromisoformat(start), dt.date.fromisoformat(ds))
    truth = expected_prices(symbols, days, TICKERS)
    prices = _main_rows(warehouse, "stock_prices")
    prices = prices[(prices["date"] >= days[0]) & (prices["date"] <= days[-1])]
    assert not prices.duplicated(["symbol", "date"]).any()
    assert {(r.symbol, r.date) for r in prices.itertuples()} == set(truth)
    for row in prices.itertuples():
        assert row.close == pytest.approx(truth[(row.symbol, row.date)]["close"])
    monthly = _main_rows(warehouse, "monthly_stock_prices")
    assert not monthly.duplicated(["symbol", "metric_name", "month_start"]).any()
    closes = monthly[monthly["metric_name"] == "close"].set_index(["symbol", "month_start"])["metric_array"]
    for (symbol, day), values in truth.items():
        assert closes[(symbol, day.replace(day=1))][day.day - 1] == pytest.approx(values["close"]), (symbol, day)


@pytest.fixture
def base(spark, warehouse, tmp_path, request):
    """Tables whose main holds 2024-03-01..05, written and audited without a branch (a namespace per test)."""
    lake = Lake(warehouse, f"wap_{request.node.name.removeprefix('test_')[:40]}", tmp_path / "runs")
    config = _config(lake, BASE[1], BASE[0])
    _stage(spark, config)
    report = _audit_and_publish(spark, config)
    assert report.branch == "" and report.tag == "run-2024-03-05"
    return lake


def test_a_clean_staged_run_reaches_main_only_when_published(spark, base):
    from lib.storage import wap

    config = _config(base, "2024-03-06", wap_branch=wap.branch_for_run(dt.date(2024, 3, 6)))
    before = _main_state(base)
    _stage(spark, config)
    assert _main_state(base) == before, "01/02 on a branch changed main"
    assert all(config.wap_branch in _refs(base, name) for name in MARKET)
    staged = _table(base, "stock_prices")
    staged_rows = staged.scan(snapshot_id=staged.snapshot_by_name(config.wap_branch).snapshot_id).to_pandas()
    assert dt.date(2024, 3, 6) in set(staged_rows["date"]), "02 did not see 01's staged rows"

    report = _audit_and_publish(spark, config)
    assert set(report.tables.values()) == {"fast-forward"}, report.tables
    _assert_main_holds(base, "2024-03-01", "2024-03-06")
    for name in MARKET:
        refs = _refs(base, name)
        assert config.wap_branch not in refs, f"{name} kept its branch after the publish"
        assert "run-2024-03-06" in refs and "run-2024-03-05" in refs
    published = _main_state(base)
    assert _audit_and_publish(spark, config).tables == dict.fromkeys(MARKET, "already on main")
    assert {name: state[0] for name, state in _main_state(base).items()} == {n: s[0] for n, s in published.items()}


def test_a_failed_gate_leaves_main_untouched_and_the_branch_to_inspect(spark, base):
    from lib.core.errors import QualityGateError
    from lib.running import steps
    from lib.storage import wap

    symbol = universe(TICKERS)[0]["ticker"]
    config = _config(base, "2024-03-06", wap_branch="audit_2024_03_06",
                     simulator_options={"defects": f"neg_volume:{symbol}:2024-03-06"})  # fmt: skip
    before = _main_state(base)
    _stage(spark, config)
    report = steps.run_quality(spark, config)
    with pytest.raises(QualityGateError) as refused:
        steps.publish(spark, config, report)
    message = str(refused.value)
    assert "volume_non_negative on stock_prices" in message
    assert "VERSION AS OF 'audit_2024_03_06'" in message and "python -m lib.wap publish --branch audit_2024_03_06" in message
    assert "python -m lib.wap drop --branch audit_2024_03_06" in message
    assert _main_state(base) == before, "a failed gate changed main (snapshot or snapshot log)"
    assert all("audit_2024_03_06" in _refs(base, name) for name in MARKET)
    assert dt.date(2024, 3, 6) not in set(_main_rows(base, "stock_prices")["date"])
    # quality_results, the audit's own record, is on main
    results = _main_rows(base, "quality_results")
    assert (results[results["ds"] == dt.date(2024, 3, 6)]["status"] == "fail").any()

    dropped = wap.drop(spark, config)
    assert dropped == list(MARKET)
    assert all("audit_2024_03_06" not in _refs(base, name) for name in MARKET)
    assert _main_state(base) == before


def test_a_run_of_another_day_published_first_is_replayed_not_lost(spark, base):
    """Two runs of different days staged from the same main: the second publish finds main moved and replays."""
    first = _config(base, "2024-03-06", wap_branch="audit_2024_03_06")
    second = _config(base, "2024-03-07", wap_branch="audit_2024_03_07")
    _stage(spark, first)
    _stage(spark, second)
    assert _audit_and_publish(spark, first).tables == dict.fromkeys(MARKET, "fast-forward")
    replayed = _audit_and_publish(spark, second)
    assert replayed.tables["stock_prices"] == "replayed on a newer main", replayed.tables
    assert replayed.tables["monthly_stock_prices"] == "replayed on a newer main"
    _assert_main_holds(base, "2024-03-01", "2024-03-07")
    tickers = _main_rows(base, "stock_tickers")
    assert set(tickers["ds"]) >= {dt.date(2024, 3, 6), dt.date(2024, 3, 7)}


PUBLISH_SCRIPT = r"""
import json, sys
from lib.running import runtime, steps
from lib.settings.config import RunConfig

config = RunConfig.from_params(**json.loads(sys.argv[1]))
spark = runtime.spark_session(config)
print(steps.publish(spark, config, steps.run_quality(spark, config)).summary(), flush=True)
"""


def test_a_publish_killed_between_two_tables_is_completed_by_the_next_run(spark, base, tmp_path):
    from lib.storage import wap

    config = _config(base, "2024-03-06", wap_branch="audit_2024_03_06")
    _stage(spark, config)
    params = {"ds": "2024-03-06", "warehouse": str(base.warehouse), "namespace": base.namespace,
              "simulator_tickers": TICKERS, "wap_branch": config.wap_branch, "run_dir": str(tmp_path / "killed")}  # fmt: skip
    log = tmp_path / "publish.log"
    env = dict(clean_env(), **{wap.PAUSE_AFTER_ENV: "raw_daily_bars"})
    process = subprocess.Popen([sys.executable, "-c", PUBLISH_SCRIPT, json.dumps(params)], cwd=REPO, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while "published raw_daily_bars, pausing" not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the publish did not reach raw_daily_bars"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)

    published, pending = MARKET[:4], MARKET[4:]  # through raw_daily_bars, where the publish paused
    assert all(config.wap_branch not in _refs(base, name) for name in published)
    assert all(config.wap_branch in _refs(base, name) for name in pending), "the kill came after the last table"
    assert dt.date(2024, 3, 6) not in set(_main_rows(base, "stock_prices")["date"])

    # The next run (the runner resumes at 03_quality): the audit reads main for what is published, then completes.
    from lib.storage import catalog

    catalog._BRANCHES.clear()  # this process's cache predates the killed publish: a new run starts without it
    report = _audit_and_publish(spark, config)
    assert report.tables == {**dict.fromkeys(published, "already on main"), **dict.fromkeys(pending, "fast-forward")}
    _assert_main_holds(base, "2024-03-01", "2024-03-06")
    assert all(config.wap_branch not in _refs(base, name) for name in MARKET)


def test_a_table_read_as_of_a_run_is_what_that_run_saw(spark, base):
    """A later run corrects a bar of an earlier day: as of the earlier run, lib.prices still gives what its 04 saw."""
    from lib.analytics import prices
    from lib.running import steps
    from lib.storage import catalog

    symbol = universe(TICKERS)[0]["ticker"]
    seen = steps.run_trends(spark, _config(base, BASE[1], BASE[0], symbols=[symbol], adjust="raw"), lookback_days=4)
    summary = _main_rows(base, "trend_summary")
    saw = summary[(summary["ds"] == dt.date(2024, 3, 5)) & (summary["symbol"] == symbol)].iloc[0]
    assert seen is not None

    correction = _config(base, "2024-03-06", "2024-03-05", wap_branch="audit_2024_03_05_2024_03_06",
                         simulator_options={"defects": f"price_spike:{symbol}:2024-03-05"})  # fmt: skip
    _stage(spark, correction)
    _audit_and_publish(spark, correction)  # price_jumps and outliers warn: the gate passes

    reader = _config(base, "2024-03-06")
    start = dt.date.fromisoformat(BASE[0])
    now = prices.read(reader, [symbol], start, dt.date(2024, 3, 5), adjust="raw")
    then = prices.read(reader, [symbol], start, dt.date(2024, 3, 5), adjust="raw", as_of_run=dt.date(2024, 3, 5))
    assert then["close"].iloc[-1] == pytest.approx(saw["last_close"]) and len(then) == saw["bars"]
    assert now["close"].iloc[-1] != pytest.approx(saw["last_close"]), "the correction did not change main"

    # expiry keeps a tagged run: expire all but the current snapshot, the tag still reads
    catalog.maintain(spark, reader, "monthly_stock_prices", keep_last=1)
    again = prices.read(reader, [symbol], start, dt.date(2024, 3, 5), adjust="raw", as_of_run=dt.date(2024, 3, 5))
    assert again.equals(then)
    with pytest.raises(Exception, match="run-2024-02-01"):
        prices.read(reader, [symbol], start, dt.date(2024, 3, 5), as_of_run=dt.date(2024, 2, 1))
