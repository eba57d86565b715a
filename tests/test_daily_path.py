"""A daily run is an incremental step of the backfill (contract: "Daily runs equal the backfill").

Two warehouses over the same market days, from the same simulator: one range run, and a shorter range followed by
daily runs and a re-run of a past day inside the first range. Every analysis table must come out the same, compared
row by row (doubles to 1e-9 relative) against the range run: the reference is an independent sequence of runs, not
the code's own arithmetic. The days hold a new listing (KOVX lists on 2024-02-29), a 1:N split (TPVG, ex-date
2024-03-01) and quarterly dividends of the universe.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from lib.core.trading_days import trading_days
from lib.ingestion.rest_client import ClientSettings
from lib.running import steps
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess, corporate_actions, listing_dates
from lib.storage import catalog

KEY = "daily-path-key-3c1e"
TICKERS, SEED = 100, 42
FIRST, LAST = dt.date(2024, 2, 20), dt.date(2024, 3, 1)
DAILY_FROM = dt.date(2024, 2, 28)  # the second warehouse: a range up to the day before, then one run a day
RERUN = dt.date(2024, 2, 22)  # then this past day again, inside the first range
# Columns that record which run wrote a row (provenance), not what the row says.
PROVENANCE = {"ds", "run_ds", "ingested_at", "first_seen_ds", "last_seen_ds"}
KEYS = {
    "stock_prices": ["symbol", "date"],
    "monthly_stock_prices": ["symbol", "month_start", "metric_name"],
    "technical_indicators": ["symbol", "date"],
    "anomalies": ["symbol", "date", "kind"],
    "forecasts": ["symbol", "model", "origin_date", "horizon"],
}


def _config(warehouse, namespace: str, start: dt.date, ds: dt.date) -> RunConfig:
    return RunConfig.from_params(
        warehouse=str(warehouse), namespace=namespace, ds=str(ds), start_ds=str(start), strategy="grouped",
        simulator_tickers=TICKERS, top_n=6, horizon_days=3, wap_branch="",
    )  # fmt: skip


def _run(spark, settings, warehouse, namespace: str, start: dt.date, ds: dt.date) -> None:
    """The pipeline's steps for start..ds, as python -m lib.run runs them (no audit branch: main directly)."""
    config = _config(warehouse, namespace, start, ds)
    steps.run_ingest(spark, config, settings)
    steps.run_rollup(spark, config, keep_snapshots=None)
    steps.run_indicators(spark, config)
    # A short window and low thresholds: the days are few, and the comparison needs flagged rows.
    steps.run_anomalies(spark, config, thresholds={"return": 1.5, "gap": 1.5, "volume": 1.5}, window=5)
    if ds == LAST:  # trend_summary is compared on the last day only; the other days' runs would only cost time
        steps.run_trends(spark, config, lookback_days=30)
    steps.run_forecast(spark, config)


def _frame(spark, warehouse, namespace: str, name: str, where: str | None = None) -> pd.DataFrame:
    table = catalog.read_table(spark, _config(warehouse, namespace, FIRST, LAST), name)
    if where:
        table = table.filter(where)
    frame = table.drop(*[c for c in table.columns if c in PROVENANCE]).toPandas()
    keys = KEYS.get(name, [c for c in frame.columns if frame[c].dtype == object or c.endswith("date") or c == "horizon"])
    return frame.sort_values(keys).reset_index(drop=True)


def _assert_same(range_run: pd.DataFrame, daily: pd.DataFrame, name: str) -> None:
    assert len(range_run) > 0, f"{name}: the range run wrote nothing to compare"
    pd.testing.assert_frame_equal(daily, range_run, check_exact=False, rtol=1e-9, atol=0, check_dtype=False, obj=name)


@pytest.fixture(scope="module")
def warehouses(spark, warehouse):
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2)
        _run(spark, settings, warehouse, "eq_range", FIRST, LAST)
        _run(spark, settings, warehouse, "eq_daily", FIRST, DAILY_FROM - dt.timedelta(days=1))
        for day in trading_days(DAILY_FROM, LAST):
            _run(spark, settings, warehouse, "eq_daily", day, day)
        _run(spark, settings, warehouse, "eq_daily", RERUN, RERUN)
    return warehouse


def test_the_days_hold_a_listing_a_split_and_dividends():
    """The scenario the equality below covers, from the simulator's own records (an independent source)."""
    days = trading_days(FIRST, LAST)
    actions = corporate_actions(TICKERS, SEED)
    assert listing_dates(TICKERS, SEED)["KOVX"] in days
    assert any(a["action_type"] == "split" and a["ticker"] == "TPVG" and dt.date.fromisoformat(str(a["ex_date"])) in days
               for a in actions)  # fmt: skip
    assert any(a["action_type"] == "dividend" and dt.date.fromisoformat(str(a["ex_date"])) in days for a in actions)


@pytest.mark.parametrize("name", list(KEYS))
def test_daily_runs_and_a_rerun_leave_the_table_as_the_range_run(spark, warehouses, name):
    _assert_same(_frame(spark, warehouses, "eq_range", name), _frame(spark, warehouses, "eq_daily", name), name)


@pytest.mark.parametrize("name", ["trend_summary", "forecast_metrics"])
def test_the_last_days_summaries_are_the_same_whichever_runs_produced_it(spark, warehouses, name):
    where = f"ds = DATE'{LAST}'"
    _assert_same(_frame(spark, warehouses, "eq_range", name, where), _frame(spark, warehouses, "eq_daily", name, where), name)


def test_daily_runs_score_their_forecasts(spark, warehouses):
    """Every forecast whose target is a stored day has its actual, and the last day's metrics count them all."""
    forecasts = _frame(spark, warehouses, "eq_daily", "forecasts")
    held = forecasts["target_date"] <= LAST
    assert forecasts.loc[held, "actual_close"].notna().all()
    assert forecasts.loc[~held, "actual_close"].isna().all()
    metrics = _frame(spark, warehouses, "eq_daily", "forecast_metrics", f"ds = DATE'{LAST}'")
    naive = metrics[metrics["model"] == "naive"].set_index("horizon")["n"]
    per_horizon = forecasts[held & (forecasts["model"] == "naive")].groupby("horizon").size()
    assert (naive > 0).all() and naive.sum() <= per_horizon.sum()
