"""End to end: the five notebooks through papermill as a user runs them (`make run` over a range, then the next
day's run), then the tables read back by independent readers."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.storage.catalog import SCHEMAS
from tests.test_security import CANARY

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
START, DS = "2024-02-27", "2024-03-05"  # crosses a month boundary; 2024-02-29 exists
RANGE_END = "2024-03-04"  # the range run ends here; DS is the next day's run
TICKERS = 25


def run_pipeline(simulator, warehouse: Path, run_dir: Path, *extra: str, start: str = START, ds: str = DS
                 ) -> subprocess.CompletedProcess:  # fmt: skip
    """`make run` with a key: the canary, under both names, against a simulator that accepts only it."""
    env = dict(os.environ, MASSIVE_API_KEY=CANARY, POLYGON_API_KEY=CANARY)  # both names, the same key: fine
    command = [
        sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--ds", ds, "--start-ds", start,
        "-p", "warehouse", str(warehouse), "-p", "run_dir", str(run_dir), "-p", "api_base_url", simulator.base_url,
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A range run of every notebook, then the next day's run of every notebook (run_dir is the daily run's record),
    shared by the tests of this file (the canary test searches all they produced). The daily run scores the range
    run's forecasts: 05_forecast's closing asserts check its metrics against the stored forecasts."""
    from lib.simulator.process import SimulatorProcess

    root = tmp_path_factory.mktemp("e2e")
    warehouse, run_dir = root / "warehouse", root / "runs" / DS
    with SimulatorProcess(tickers=TICKERS, api_key=CANARY) as simulator:
        ranged = run_pipeline(simulator, warehouse, root / "runs" / RANGE_END, ds=RANGE_END)
        assert ranged.returncode == 0, f"make-run equivalent failed:\n{ranged.stdout[-3000:]}\n{ranged.stderr[-3000:]}"
        daily = run_pipeline(simulator, warehouse, run_dir, start=DS)
        assert daily.returncode == 0, f"the next day's run failed:\n{daily.stdout[-3000:]}\n{daily.stderr[-3000:]}"
        yield {"root": root, "warehouse": warehouse, "run_dir": run_dir, "stdout": ranged.stdout + daily.stdout,
               "stderr": ranged.stderr + daily.stderr, "daily": daily.stdout, "simulator": simulator}  # fmt: skip


def test_canary_key_leaves_no_trace_in_anything_a_run_produces(pipeline):
    """The run above used a canary key; every byte it wrote is searched for it, and every cell of every table."""
    root, warehouse, run_dir = pipeline["root"], pipeline["warehouse"], pipeline["run_dir"]
    # The run really used the key: the simulator accepts only the canary, and the tables hold its bars.
    record = json.loads((run_dir / "run.json").read_text())
    assert record["tables"]["stock_prices"]["total_rows"] > 0, record["tables"]
    assert [n["notebook"] for n in record["notebooks"]] == ["01_ingest", "02_monthly_rollup", "03_quality", "04_trends",
                                                           "05_forecast"]  # fmt: skip
    produced = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in produced) and any(p.name.endswith(".metadata.json") for p in produced)
    assert any(p.suffix == ".ipynb" for p in produced) and any(p.suffix == ".png" for p in produced)
    needle = CANARY.encode()
    hits = [str(p) for p in produced if needle in p.read_bytes()]
    assert hits == [], f"the key was written to {hits}"
    assert CANARY not in pipeline["stdout"] and CANARY not in pipeline["stderr"]
    # Parquet pages are compressed, so also read every cell of every table back.
    for name, frame in pyiceberg_tables(warehouse).items():
        assert CANARY not in frame.astype(str).to_csv(), f"the key is stored in {name}"


def pyiceberg_tables(warehouse: Path) -> dict:
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    return {name: cat.load_table(f"stocks.{name}").scan().to_pandas() for name in SCHEMAS}


def test_run_record_holds_executed_notebooks_and_figures(pipeline):
    run_dir = pipeline["run_dir"]
    for name in ("01_ingest", "02_monthly_rollup", "03_quality", "04_trends", "05_forecast"):
        assert (run_dir / f"{name}.ipynb").is_file(), name
    figures = sorted((run_dir / "figures").glob("*.png"))
    assert len(figures) >= 7, figures
    assert all(f.stat().st_size > 5000 for f in figures)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok"
    assert "succeeded" in pipeline["stdout"]


def test_the_run_was_staged_audited_and_published(pipeline):
    """A run writes on audit_<start>_<ds> (audit_<ds> for a day), and 03_quality publishes it: main holds the data,
    the branch is gone, main is tagged run-<ds>, and run.json records each table's main snapshot."""
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = pipeline["warehouse"]
    record = json.loads((pipeline["run_dir"] / "run.json").read_text())
    branch = "audit_2024_03_05"
    assert record["parameters"]["wap_branch"] == branch
    assert record["audit"] == {"branch": branch, "published": True, "staged_tables": []}
    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    for name in ("stock_tickers", "corporate_actions", "raw_daily_bars", "stock_prices", "monthly_stock_prices"):
        table = cat.load_table(f"stocks.{name}")
        assert branch not in table.metadata.refs, f"{name} kept the audit branch"
        assert table.snapshot_by_name(f"run-{DS}").snapshot_id == table.current_snapshot().snapshot_id
        assert record["snapshots"][name] == table.current_snapshot().snapshot_id
    assert "03_quality ok" in pipeline["daily"]


def test_the_run_prints_only_what_a_user_can_act_on(pipeline):
    printed = pipeline["stdout"] + pipeline["stderr"]
    assert "Kernel is running over TCP" not in printed and "[IPKernelApp] WARNING" not in printed, printed[-2000:]


def test_executed_notebooks_show_their_figures_as_pictures(pipeline):
    """The run record a person opens: every figure cell holds an image/png output, not `<Figure size ...>`."""
    import base64

    figure_cells = {"01_ingest": 1, "02_monthly_rollup": 1, "03_quality": 3, "04_trends": 9, "05_forecast": 2}
    for name, expected in figure_cells.items():
        cells = json.loads((pipeline["run_dir"] / f"{name}.ipynb").read_text())["cells"]
        outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
        pictures = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
        assert len(pictures) == expected, f"{name}: {len(pictures)} pictures, want {expected}"
        assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5000 for p in pictures), name
        shown_as_text = [o for o in outputs if "<Figure size" in json.dumps(o.get("data", {}).get("text/plain", ""))]
        assert not shown_as_text, f"{name}: a figure shown as its repr"


def test_the_next_days_run_scored_the_range_runs_forecasts(pipeline):
    """The daily run filled actual_close of the range run's forecasts that target its day, and forecast_metrics of
    that day scores them: against the close stored for the target (no split in these days, so the basis is the
    traded close)."""
    tables = pyiceberg_tables(pipeline["warehouse"])
    forecasts, prices = tables["forecasts"], tables["stock_prices"]
    ds = dt.date.fromisoformat(DS)
    due = forecasts[(forecasts["target_date"] == ds) & (forecasts["origin_date"] < ds)]
    assert len(due) > 0 and due["actual_close"].notna().all(), due
    closes = prices[prices["date"] == ds].set_index("symbol")["close"]
    assert due["actual_close"].to_numpy() == pytest.approx(closes.loc[due["symbol"]].to_numpy(), rel=1e-12)
    metrics = tables["forecast_metrics"]
    assert (metrics.loc[metrics["ds"] == ds, "n"] > 0).all() and (metrics["ds"] == ds).any()


def test_tables_read_back_with_pyiceberg(pipeline):
    from lib.core.trading_days import trading_days

    tables = pyiceberg_tables(pipeline["warehouse"])
    prices = tables["stock_prices"]
    days = trading_days(dt.date.fromisoformat(START), dt.date.fromisoformat(DS))
    assert sorted(set(prices["date"])) == days
    assert not prices.duplicated(["symbol", "date"]).any()
    assert prices["symbol"].nunique() == TICKERS
    tickers = tables["stock_tickers"]  # the universe as of each run's ds
    assert set(tickers["ds"]) == {dt.date.fromisoformat(RANGE_END), dt.date.fromisoformat(DS)}
    assert (tickers.groupby("ds").size() == TICKERS).all()
    monthly = tables["monthly_stock_prices"]
    assert not monthly.duplicated(["symbol", "month_start", "metric_name"]).any()
    assert set(monthly["month_start"]) == {dt.date(2024, 2, 1), dt.date(2024, 3, 1)}
    from_dates = monthly.groupby("month_start")["from_date"].unique()
    assert list(from_dates[dt.date(2024, 2, 1)]) == [dt.date(2024, 2, 29)]
    assert list(from_dates[dt.date(2024, 3, 1)]) == [dt.date(2024, 3, 5)]
    checks = set(tables["quality_results"]["check_name"])
    assert {"duplicates", "null_values", "ohlc_consistency", "volume_non_negative"} <= checks
    assert len(tables["ingest_failures"]) == 0


def test_arrays_explode_back_to_exactly_the_prices(pipeline):
    tables = pyiceberg_tables(pipeline["warehouse"])
    prices = tables["stock_prices"].set_index(["symbol", "date"]).sort_index()
    monthly = tables["monthly_stock_prices"]
    for row in monthly.itertuples():
        assert len(row.metric_array) == row.from_date.day
        for i, value in enumerate(row.metric_array):
            day = row.month_start + dt.timedelta(days=i)
            key = (row.symbol, day)
            if key in prices.index:
                expected = prices.loc[key, row.metric_name]
                assert value == pytest.approx(float(expected)), (key, row.metric_name)
            else:
                assert value is None or value != value, (key, row.metric_name, value)  # null or NaN
    # and every price lands in an array
    cells = {(r.symbol, r.month_start, r.metric_name): r.metric_array for r in monthly.itertuples()}
    for (symbol, day), bar in prices.iterrows():
        array = cells[(symbol, day.replace(day=1), "close")]
        assert array[day.day - 1] == pytest.approx(bar["close"])


def test_duckdb_reads_the_same_tables(pipeline):
    duckdb = pytest.importorskip("duckdb")
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = pipeline["warehouse"]
    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    con = duckdb.connect()
    _load_duckdb_iceberg(con)
    for name in ("stock_prices", "monthly_stock_prices", "stock_tickers", "raw_daily_bars"):
        table = cat.load_table(f"stocks.{name}")
        metadata = table.metadata_location.removeprefix("file://")
        via_duckdb = con.execute(f"SELECT count(*) FROM iceberg_scan('{metadata}')").fetchone()[0]
        assert via_duckdb == len(table.scan().to_arrow()), name
    prices_meta = cat.load_table("stocks.stock_prices").metadata_location.removeprefix("file://")
    monthly_meta = cat.load_table("stocks.monthly_stock_prices").metadata_location.removeprefix("file://")
    mismatches = con.execute(f"""
        WITH exploded AS (
            SELECT symbol, metric_name, month_start + CAST(pos - 1 AS INTEGER) AS date, value
            FROM (SELECT symbol, metric_name, month_start,
                         UNNEST(metric_array) AS value, UNNEST(range(1, len(metric_array) + 1)) AS pos
                  FROM iceberg_scan('{monthly_meta}'))
            WHERE metric_name = 'close' AND value IS NOT NULL
        )
        SELECT count(*) FROM exploded e FULL OUTER JOIN iceberg_scan('{prices_meta}') p
          ON e.symbol = p.symbol AND e.date = p.date
        WHERE e.value IS NULL OR p.close IS NULL OR abs(e.value - p.close) > 1e-9
    """).fetchone()[0]
    assert mismatches == 0


def _load_duckdb_iceberg(con) -> None:
    """Load the iceberg and avro extensions shipped by their PyPI packages (no network)."""
    import importlib

    con.execute("SET autoinstall_known_extensions = false")
    for name in ("avro", "iceberg"):
        module = importlib.import_module(f"duckdb_extension_{name}")
        (extension,) = Path(module.__file__).parent.rglob("*.duckdb_extension")
        con.execute(f"LOAD '{extension}'")


def test_rerun_of_the_same_ds_leaves_the_same_tables(pipeline):
    """The notebooks that write market data, run again for the last run's day: not one row changes."""
    before = pyiceberg_tables(pipeline["warehouse"])
    again = run_pipeline(pipeline["simulator"], pipeline["warehouse"], pipeline["run_dir"].parent / "rerun",
                         "--notebooks", "01_ingest", "02_monthly_rollup", "03_quality", start=DS)  # fmt: skip
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    after = pyiceberg_tables(pipeline["warehouse"])
    for name in ("stock_prices", "monthly_stock_prices", "stock_tickers", "raw_daily_bars"):
        drop = [c for c in ("received_at",) if c in before[name].columns]
        keys = [c for c in ("symbol", "ticker", "date", "month_start", "metric_name") if c in before[name].columns]
        left = before[name].drop(columns=drop).sort_values(keys).reset_index(drop=True)
        right = after[name].drop(columns=drop).sort_values(keys).reset_index(drop=True)
        assert len(left) == len(right), name
        assert left.astype(str).equals(right.astype(str)), name
