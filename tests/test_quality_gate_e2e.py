"""The gate end to end: the simulator serves defective bars, and 03_quality stops the run naming exactly those checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.simulator import universe

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
DAY = "2024-03-04"
TICKERS = 8


def test_defective_bars_fail_the_quality_notebook(tmp_path):
    symbols = [r["ticker"] for r in universe(TICKERS, 42)]
    defects = f"dup:{symbols[0]}:{DAY},null_close:{symbols[1]}:{DAY},high_low:{symbols[2]}:{DAY},neg_volume:{symbols[3]}:{DAY}"
    env = {k: v for k, v in os.environ.items() if k != "POLYGON_API_KEY"}
    command = [
        sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--ds", "2024-03-05", "--start-ds", "2024-03-01",
        "-p", "warehouse", str(tmp_path / "warehouse"), "-p", "run_dir", str(tmp_path / "run"),
        "-p", "simulator_tickers", str(TICKERS), "-p", "simulator_options", json.dumps({"defects": defects}),
        "--notebooks", "01_ingest", "02_monthly_rollup", "03_quality",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode != 0, "a run with defective bars must fail"
    output = result.stdout + result.stderr
    assert "01_ingest ok" in output and "02_monthly_rollup ok" in output, output[-3000:]
    assert "03_quality FAILED" in output

    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = tmp_path / "warehouse"
    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri())
    results = cat.load_table("stocks.quality_results").scan().to_pandas()
    failed_errors = results[(results.status == "fail") & (results.severity == "error")]
    assert set(failed_errors.check_name) == {"duplicates", "null_values", "ohlc_consistency", "volume_non_negative"}
    by_table = {(r.check_name, r.table_name): r.failed_rows for r in failed_errors.itertuples()}
    assert by_table[("duplicates", "raw_daily_bars")] == 1
    assert ("duplicates", "stock_prices") not in by_table  # stock_prices keeps one row per key
    assert by_table[("null_values", "stock_prices")] == 1
    assert by_table[("ohlc_consistency", "stock_prices")] == 1
    assert by_table[("volume_non_negative", "stock_prices")] == 1
    # the notebook's error names the failed checks
    executed = (tmp_path / "run" / "03_quality.ipynb").read_text()
    assert "quality gate failed" in executed and "volume_non_negative on stock_prices (1 rows)" in executed

    # write-audit-publish: nothing reached main, the branch is there to inspect, the run says how
    branch = "audit_2024_03_01_2024_03_05"
    for name in ("stock_tickers", "corporate_actions", "raw_daily_bars", "stock_prices", "monthly_stock_prices"):
        table = cat.load_table(f"stocks.{name}")
        assert table.current_snapshot() is None, f"{name}: the failed run reached main"
        assert branch in table.metadata.refs, f"{name}: no branch {branch} to inspect"
    staged = cat.load_table("stocks.stock_prices")
    bars = staged.scan(snapshot_id=staged.snapshot_by_name(branch).snapshot_id).to_pandas()
    assert (bars["volume"] < 0).sum() == 1, "the branch does not hold what the run staged"
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["audit"]["branch"] == branch and not record["audit"]["published"]
    assert f"python -m lib.wap drop --branch {branch}" in record["audit"]["inspect"]
    assert "not published" in output and f"python -m lib.wap publish --branch {branch}" in output
