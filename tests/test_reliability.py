"""Reliability: API faults survived, crashes and concurrent runs leave correct tables, bad input refused clearly."""

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

from lib.core.trading_days import today_new_york, trading_days
from lib.simulator.data import bar, universe
from tests.test_security import StubServer, settings_for

REPO = Path(__file__).resolve().parent.parent
PRICE_KEYS = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "POLYGON_API_KEY"}


def runner(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lib.run", "-f", "params/local.yaml", *args]
    return subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def pyiceberg_catalog(warehouse: Path):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())


def read(warehouse: Path, name: str):
    return pyiceberg_catalog(warehouse).load_table(f"stocks.{name}").scan().to_pandas()


def expected_prices(tickers: list[str], days: list[dt.date], n: int, keys=PRICE_KEYS) -> dict[tuple[str, dt.date], dict]:
    """The fault-free truth, straight from the simulator's data model: {(symbol, date): {column: value}}."""
    truth = {}
    for symbol in tickers:
        for day in days:
            cell = bar(symbol, day, n)
            if cell is not None:
                truth[(symbol, day)] = {column: float(cell[key]) for column, key in keys.items()}
    return truth


def assert_prices_equal(prices, truth: dict, columns=tuple(PRICE_KEYS)) -> None:
    assert not prices.duplicated(["symbol", "date"]).any(), "duplicate (symbol, date) in stock_prices"
    stored = {(r.symbol, r.date): r for r in prices.itertuples()}
    assert set(stored) == set(truth), (
        f"missing {sorted(set(truth) - set(stored))[:5]}, unexpected {sorted(set(stored) - set(truth))[:5]}"
    )
    for key, values in truth.items():
        for column in columns:
            assert getattr(stored[key], column) == pytest.approx(values[column], rel=1e-9), (key, column)


# -- 1. faults from the API, end to end -------------------------------------------------------------------------------

FAULT_TICKERS = 6
FAULT_START, FAULT_DS = "2024-03-25", "2024-03-28"


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_faulty_api_run_stores_every_bar_once_and_failures_only_in_ingest_failures(tmp_path):
    """A quarter of requests fault (429 + Retry-After, 500, 503, reset, malformed, truncated, slow past the 30 s
    client timeout) and one ticker always fails: the tables equal the fault-free data, the failing ticker is only in
    ingest_failures."""
    symbols = [r["ticker"] for r in universe(FAULT_TICKERS)]
    failing = symbols[1]
    options = {"fault_rate": 0.25, "faults": "429,500,503,reset,malformed,truncated,slow", "fail_tickers": failing,
               "retry_after": 1, "slow_ms": 31000, "fault_seed": 11}  # fmt: skip
    warehouse, run_dir = tmp_path / "warehouse", tmp_path / "runs" / FAULT_DS
    run = runner(
        "--ds", FAULT_DS, "--start-ds", FAULT_START, "--notebooks", "01_ingest", "02_monthly_rollup",
        "-p", "warehouse", str(warehouse), "-p", "run_dir", str(run_dir), "-p", "simulator_tickers", str(FAULT_TICKERS),
        "-p", "strategy", "per_ticker", "-p", "simulator_options", json.dumps(options),
    )  # fmt: skip
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    calls = json.loads((run_dir / "run.json").read_text())["calls"]  # from 01_ingest's report (01_ingest.json)
    assert calls and calls["retries"] > 0, f"no fault was injected: {calls}"

    days = trading_days(dt.date.fromisoformat(FAULT_START), dt.date.fromisoformat(FAULT_DS))
    healthy = [s for s in symbols if s != failing]
    assert_prices_equal(read(warehouse, "stock_prices"), expected_prices(healthy, days, FAULT_TICKERS))
    raw = read(warehouse, "raw_daily_bars")
    assert not raw.duplicated(["symbol", "date"]).any() and failing not in set(raw["symbol"])
    monthly = read(warehouse, "monthly_stock_prices")
    assert not monthly.duplicated(["symbol", "month_start", "metric_name"]).any()
    assert set(monthly["symbol"]) == set(healthy), "the failing ticker (or a healthy one's absence) leaked into the arrays"

    failures = read(warehouse, "ingest_failures")
    assert set(failures["symbol"]) == {failing}, failures[["symbol", "endpoint", "http_status", "error"]]
    # Its bars fail on every day; so does, once, the reference call that names it when it has no composite FIGI.
    named_by_details = not next(r for r in universe(FAULT_TICKERS) if r["ticker"] == failing).get("composite_figi")
    expected = [f"{failing}/open_close"] * len(days) + [f"{failing}/ticker_details"] * named_by_details
    assert sorted(failures["symbol"].str.cat(failures["endpoint"], sep="/").tolist()) == sorted(expected)
    assert set(failures["http_status"]) == {500} and (failures["attempts"] >= 2).all()


# -- 2 and 3. a killed run, then two runs at once --------------------------------------------------------------------

STEPS_SCRIPT = r"""
import json, sys
from lib.running import runtime, steps
from lib.settings.config import RunConfig

job = json.loads(sys.argv[1])
config = RunConfig.from_params(**job["params"])
spark = runtime.spark_session(config)
try:
    if "ingest" in job["steps"]:
        source = runtime.open_data_source(config)
        try:
            steps.run_ingest(spark, config, source.settings)
        finally:
            source.stop()
    if "rollup" in job["steps"]:
        steps.run_rollup(spark, config)
except Exception as exc:
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    java = getattr(exc, "java_exception", None)
    while java is not None:  # a Py4J error: the Java exception and its causes, one line each
        error += " | " + java.toString()
        java = java.getCause()
    print("RESULT " + json.dumps({"status": "failed", "error": error[:4000]}), flush=True)
    sys.exit(3)
print("RESULT " + json.dumps({"status": "ok"}), flush=True)
"""

CRASH_TICKERS = 8
BASE_START, CRASH_START, CRASH_DS = "2024-03-01", "2023-01-03", "2024-03-28"
TABLES = ("stock_tickers", "raw_daily_bars", "stock_prices", "monthly_stock_prices", "ingest_failures")
# A clean conflict: the workspace's typed error, or Iceberg's own commit-conflict exceptions (not a catalog's raw SQL error).
CONFLICT_WORDS = ("CommitConflictError", "CommitFailedException", "ValidationException", "CommitStateUnknownException")


def steps_job(warehouse: Path, start: str, run_dir: Path, steps=("ingest", "rollup")) -> list[str]:
    params = {"ds": CRASH_DS, "start_ds": start, "warehouse": str(warehouse), "simulator_tickers": CRASH_TICKERS,
              "strategy": "range", "run_dir": str(run_dir)}  # fmt: skip
    return [sys.executable, "-c", STEPS_SCRIPT, json.dumps({"params": params, "steps": list(steps)})]


def start_steps(command: list[str], log: Path) -> subprocess.Popen:
    # Its own session: the Spark JVM and the simulator it starts die with it (os.killpg on its id).
    return subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def finish(process: subprocess.Popen, log: Path, timeout: float = 1200) -> dict:
    process.wait(timeout=timeout)
    lines = [line for line in log.read_text().splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else {"status": "died", "error": log.read_text()[-3000:]}


def table_state(warehouse: Path) -> dict[str, tuple[int | None, int]]:
    """Each table's current snapshot id and row count, read through pyiceberg (no JVM)."""
    cat = pyiceberg_catalog(warehouse)
    state = {}
    for name in TABLES:
        table = cat.load_table(f"stocks.{name}")
        snapshot = table.current_snapshot()
        state[name] = (snapshot.snapshot_id if snapshot else None, table.scan().to_arrow().num_rows)
    return state


def assert_correct_state(warehouse: Path) -> None:
    """stock_prices equals the simulator's bars over the crash span, no duplicate anywhere, arrays agree with prices."""
    symbols = [r["ticker"] for r in universe(CRASH_TICKERS)]
    days = trading_days(dt.date.fromisoformat(CRASH_START), dt.date.fromisoformat(CRASH_DS))
    keys = PRICE_KEYS | {"vwap": "vw"}
    prices = read(warehouse, "stock_prices")
    assert_prices_equal(prices, expected_prices(symbols, days, CRASH_TICKERS, keys), tuple(keys))
    raw = read(warehouse, "raw_daily_bars")
    assert len(raw) == len(prices) and not raw.duplicated(["symbol", "date"]).any()
    tickers = read(warehouse, "stock_tickers")
    assert not tickers.duplicated(["ticker", "ds"]).any() and len(tickers) == CRASH_TICKERS
    monthly = read(warehouse, "monthly_stock_prices")
    assert not monthly.duplicated(["symbol", "month_start", "metric_name"]).any()
    closes = monthly[monthly["metric_name"] == "close"].set_index(["symbol", "month_start"])["metric_array"]
    for row in prices.sample(n=min(200, len(prices)), random_state=1).itertuples():
        array = closes[(row.symbol, row.date.replace(day=1))]
        assert array[row.date.day - 1] == pytest.approx(row.close), (row.symbol, row.date)
    assert len(read(warehouse, "ingest_failures")) == 0


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A warehouse holding March 2024, then an ingest of 2023-01..2024-03 killed with SIGKILL while it writes."""
    root = tmp_path_factory.mktemp("crash")
    warehouse = root / "warehouse"
    baseline = finish(start_steps(steps_job(warehouse, BASE_START, root / "runs"), root / "baseline.log"), root / "baseline.log")
    assert baseline["status"] == "ok", baseline
    before = table_state(warehouse)
    files_before = set(warehouse.rglob("*.parquet"))

    log = root / "killed.log"
    process = start_steps(steps_job(warehouse, CRASH_START, root / "runs"), log)
    deadline = time.monotonic() + 900
    new_files: set[Path] = set()
    while process.poll() is None and time.monotonic() < deadline:
        new_files = set(warehouse.rglob("*.parquet")) - files_before
        if new_files:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert new_files, f"the run ended before it wrote a data file, nothing was killed mid-write:\n{log.read_text()[-3000:]}"
    return {"root": root, "warehouse": warehouse, "before": before, "after_kill": table_state(warehouse),
            "new_files": new_files}  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_killed_ingest_leaves_every_table_at_its_previous_snapshot(crashed):
    assert crashed["after_kill"] == crashed["before"], "a table changed although its writer was killed before committing"
    march = read(crashed["warehouse"], "stock_prices")
    assert set(march["date"]) == set(trading_days(dt.date.fromisoformat(BASE_START), dt.date.fromisoformat(CRASH_DS)))


@pytest.fixture(scope="module")
def recovered(crashed):
    root = crashed["root"]
    rerun = finish(
        start_steps(steps_job(crashed["warehouse"], CRASH_START, root / "runs"), root / "rerun.log"), root / "rerun.log"
    )
    assert rerun["status"] == "ok", rerun
    return crashed


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_next_run_after_a_crash_completes_to_the_correct_state(recovered):
    assert_correct_state(recovered["warehouse"])


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_two_runs_of_the_same_ds_at_once_end_correct_without_duplicates(recovered):
    """Both end, or one fails on the Iceberg commit conflict (not with an unrelated error) and a retry succeeds."""
    root, warehouse = recovered["root"], recovered["warehouse"]
    logs = [root / f"concurrent_{i}.log" for i in (1, 2)]
    processes = [start_steps(steps_job(warehouse, "2024-03-18", root / "runs"), log) for log in logs]
    outcomes = [finish(p, log) for p, log in zip(processes, logs, strict=True)]
    failed = [o for o in outcomes if o["status"] != "ok"]
    assert len(failed) <= 1, f"both concurrent runs failed: {outcomes}"
    for outcome in failed:
        assert any(word in outcome["error"] for word in CONFLICT_WORDS), f"not a clean commit conflict: {outcome['error']}"
        retry_log = root / "retry.log"
        retry = finish(start_steps(steps_job(warehouse, "2024-03-18", root / "runs"), retry_log), retry_log)
        assert retry["status"] == "ok", retry
    assert_correct_state(warehouse)


# -- 4. bad input, refused before any work with a message that says what to do --------------------------------------


def _future() -> str:
    return (today_new_york() + dt.timedelta(days=30)).isoformat()


BAD_INPUT = {
    "ds_format": (["--ds", "2024/03/28"], "ds must be YYYY-MM-DD, got '2024/03/28'"),
    "start_after_ds": (["--ds", "2024-03-01", "--start-ds", "2024-03-28"], "start_ds must be on or before ds"),
    "future_ds": (["--ds", "FUTURE"], "is in the future"),
    "strategy": (["--ds", "2024-03-28", "--start-ds", "2024-03-25", "-p", "strategy", "fastest"], "strategy must be one of"),
    "env": (["--ds", "2024-03-28", "--start-ds", "2024-03-25", "-p", "env", "cloud"], "env must be one of"),
    "warehouse": (
        ["--ds", "2024-03-28", "--start-ds", "2024-03-25", "-p", "warehouse", "FILE/warehouse"],
        "Point -p warehouse at a folder you can write",
    ),
    "no_tickers": (
        ["--ds", "2024-03-28", "--start-ds", "2024-03-25", "-p", "simulator_tickers", "0"],
        "simulator_tickers must be at least 1",
    ),
    "params_key": (["--ds", "2024-03-28", "--start-ds", "2024-03-25", "-f", "PARAMS"], "unknown parameter(s) ['warehous']"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_runner_refuses_bad_input_before_running_anything(case, tmp_path):
    args, message = BAD_INPUT[case]
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("")
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params/local.yaml").read_text() + "warehous: typo\n")
    args = [{"FUTURE": _future(), "FILE/warehouse": str(a_file / "warehouse"), "PARAMS": str(params)}.get(a, a) for a in args]
    run_dir = tmp_path / "runs" / "record"
    run = runner(*args, "-p", "run_dir", str(run_dir), timeout=300)
    assert run.returncode != 0
    assert message in run.stdout + run.stderr, run.stderr[-2000:]
    assert not run_dir.exists(), "a notebook started although the input was refused"


def test_unwritable_warehouse_is_refused_with_what_to_do(tmp_path):
    from lib.core.errors import ConfigError
    from lib.settings.config import RunConfig

    a_file = tmp_path / "catalog-here"
    a_file.write_text("")
    for warehouse in (a_file, a_file / "nested" / "warehouse"):
        with pytest.raises(ConfigError, match="Point -p warehouse at a folder"):
            RunConfig.from_params(ds="2024-03-28", warehouse=str(warehouse))
    assert RunConfig.from_params(ds="2024-03-28", warehouse=str(tmp_path / "new" / "warehouse")).warehouse
    assert not (tmp_path / "new").exists(), "validation must not create anything"
    assert RunConfig.from_params(ds="2024-03-28", env="glue", warehouse="s3://bucket/warehouse").env == "glue"


@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_span_without_a_trading_day_is_an_empty_run_that_says_so(tmp_path):
    """Good Friday 2024 and the weekend after it: exit 0, no bar, and the run says there was nothing to fetch."""
    warehouse, run_dir = tmp_path / "warehouse", tmp_path / "runs" / "2024-03-31"
    run = runner("--ds", "2024-03-31", "--start-ds", "2024-03-29", "--notebooks", "01_ingest", "02_monthly_rollup",
                 "-p", "warehouse", str(warehouse), "-p", "run_dir", str(run_dir), "-p", "simulator_tickers", "3")  # fmt: skip
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    outputs = "".join((run_dir / f"{n}.ipynb").read_text() for n in ("01_ingest", "02_monthly_rollup"))
    assert "no NYSE trading day in the span: nothing to fetch (an empty run)" in outputs
    assert "no NYSE trading day in the span: no month to update (an empty run)" in outputs
    assert len(read(warehouse, "stock_prices")) == 0 and len(read(warehouse, "monthly_stock_prices")) == 0


# -- the API refusing us: 401, 403, an empty universe (no JVM: the catalog call is stubbed out) ----------------------


def _ingest_against(stub: StubServer, monkeypatch):
    from lib.running import steps
    from lib.settings.config import RunConfig
    from lib.storage import catalog

    monkeypatch.setattr(catalog, "ensure_tables", lambda spark, config: None)
    config = RunConfig.from_params(ds="2024-03-28", api_base_url=stub.base_url)
    return steps.run_ingest(None, config, settings_for(stub.base_url, max_attempts=5))


@pytest.mark.parametrize(
    "status, error, expected",
    [(401, "Unknown API Key", "the API key was refused (check POLYGON_API_KEY)"),
     (403, "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing",
      "your Polygon plan is not entitled")],
)  # fmt: skip
def test_refused_key_stops_the_run_at_once_with_a_clear_message(status, error, expected, monkeypatch):
    import asyncio

    from lib.core.errors import PolygonAuthError
    from lib.ingestion.async_client import AsyncPolygonClient

    body = {"status": "NOT_AUTHORIZED" if status == 403 else "ERROR", "request_id": "x", "error": error}
    with StubServer(lambda h: (status, {}, body)) as stub:
        with pytest.raises(PolygonAuthError) as refused:
            _ingest_against(stub, monkeypatch)
        assert len(stub.requests) == 1, "a refused key was retried"

        async def bars():
            async with AsyncPolygonClient(settings_for(stub.base_url, max_attempts=5)) as client:
                await client.open_close("AAA", dt.date(2024, 3, 28))

        with pytest.raises(PolygonAuthError):
            asyncio.run(bars())
        assert len(stub.requests) == 2, "a refused key was retried by the executors' client"
    message = str(refused.value)
    assert str(status) in message and expected in message and error in message


def test_empty_ticker_universe_is_refused_with_what_to_check(monkeypatch):
    from lib.core.errors import ConfigError

    with StubServer(lambda h: (200, {}, {"status": "OK", "results": [], "count": 0})) as stub:
        with pytest.raises(ConfigError, match="the ticker universe for 2024-03-28 is empty") as refused:
            _ingest_against(stub, monkeypatch)
    assert "Check api_base_url and your plan" in str(refused.value)


def test_ticker_page_served_twice_is_stored_once(spark, warehouse):
    """The repeat fault hands out a page of tickers twice (a cursor glitch): stock_tickers keeps one row per ticker."""
    from lib.running import runtime, steps
    from lib.settings.config import RunConfig
    from lib.simulator.data import delisting_dates, listing_dates

    universe_size = 1100  # more than one page of 1,000 tickers, so there is a next_url to repeat
    config = RunConfig.from_params(ds="2024-03-28", warehouse=str(warehouse), namespace="reliability_repeat",
                                   simulator_tickers=universe_size, strategy="grouped",
                                   simulator_options={"fault_rate": 1.0, "faults": "repeat"})  # fmt: skip
    delisted = delisting_dates(universe_size)  # a delisted ticker is no longer in the day's active universe
    listed = sum(1 for ticker, day in listing_dates(universe_size).items()
                 if day <= config.ds and not (ticker in delisted and delisted[ticker] <= config.ds))  # fmt: skip
    source = runtime.open_data_source(config)
    try:
        report = steps.run_ingest(spark, config, source.settings)
    finally:
        source.stop()
    assert report.calls["tickers"] >= 3, "the repeated page was not served (the fault did not fire)"
    tickers = steps.span_table(spark, config, "stock_tickers", column="ds", start=config.ds).toPandas()
    assert not tickers.duplicated(["ticker", "ds"]).any(), "a ticker stored twice for one ds"
    assert len(tickers) == listed and report.tickers == listed
