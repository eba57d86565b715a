"""A daily run is an incremental step of the backfill (contract: "Daily runs equal the backfill").

Two warehouses over the same market days, from the same simulator: one range run, and a shorter range followed by
daily runs and a re-run of a past day inside the first range. Every analysis table must come out the same, compared
row by row (doubles to 1e-9 relative) against the range run: the reference is an independent sequence of runs, not
the code's own arithmetic. The simulator's today follows the runs (each run sees what the vendor had published on its
day), and its days hold, from its own records: two 1:N splits on 2024-05-01 (CRDXO announced a month before; ZII
published late, on 2024-05-07, after days of runs stored its bars without it), quarterly dividends, a delisting
(SHTB, last bar 2024-05-03), a new listing (WOC, 2024-05-08), and a halt of more than three weeks (HABS, no bar
2024-04-12..05-03, trading again on 2024-05-06, a daily run's day).
"""

from __future__ import annotations

import contextlib
import datetime as dt

import pandas as pd
import pytest

from lib.core.trading_days import trading_days
from lib.ingestion.rest_client import ClientSettings
from lib.running import steps
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess, corporate_actions, delisting_dates, listing_dates
from lib.storage import catalog

KEY = "daily-path-key-3c1e"
TICKERS, SEED = 100, 738  # a seed whose universe delists, lists and splits within a week (see the first test)
FIRST, LAST = dt.date(2024, 4, 10), dt.date(2024, 5, 8)
DAILY_FROM = dt.date(2024, 5, 6)  # the second warehouse: a range up to the day before, then one run a day
RERUN = dt.date(2024, 5, 1)  # then this past day again, inside the first range: the splits' ex-date
SPLIT, LATE_SPLIT, PUBLISHED = "CRDXO", "ZII", dt.date(2024, 5, 7)  # ZII's split is published on PUBLISHED
DELISTED, LISTED = "SHTB", "WOC"
HALTED, HALT = "HABS", (dt.date(2024, 4, 12), dt.date(2024, 5, 3))
SIMULATOR = {"defects": f"halt:{HALTED}:{HALT[0]}..{HALT[1]}", "late_actions": f"{LATE_SPLIT}:{PUBLISHED}"}
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


@contextlib.contextmanager
def _vendor(today: dt.date):
    """The simulator as the vendor served it on `today`: its bars, listings and published actions up to that day."""
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY, as_of=today, **SIMULATOR) as sim:
        yield ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2)


def _run(spark, warehouse, namespace: str, start: dt.date, ds: dt.date, today: dt.date | None = None) -> None:
    """The pipeline's steps for start..ds, as python -m lib.run runs them on `today` (default ds; no audit branch:
    main directly)."""
    config = _config(warehouse, namespace, start, ds)
    with _vendor(today or ds) as settings:
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
    _run(spark, warehouse, "eq_range", FIRST, LAST)
    before = trading_days(FIRST, DAILY_FROM - dt.timedelta(days=1))[-1]
    _run(spark, warehouse, "eq_daily", FIRST, before)
    for day in trading_days(DAILY_FROM, LAST):
        _run(spark, warehouse, "eq_daily", day, day)
    _run(spark, warehouse, "eq_daily", RERUN, RERUN, today=LAST)
    return warehouse


def test_the_days_hold_splits_dividends_a_late_split_a_delisting_a_listing_and_a_halt():
    """The scenario the equality below covers, from the simulator's own records (an independent source)."""
    days = trading_days(FIRST, LAST)
    daily_days = trading_days(DAILY_FROM, LAST)
    splits = {a["ticker"]: a for a in corporate_actions(TICKERS, SEED) if a["action_type"] == "split"
              and dt.date.fromisoformat(str(a["ex_date"])) == RERUN}  # fmt: skip
    assert {SPLIT, LATE_SPLIT} <= set(splits)
    assert RERUN < DAILY_FROM < PUBLISHED <= LAST  # the late split is learned by a daily run, days after its ex-date
    assert any(a["action_type"] == "dividend" and dt.date.fromisoformat(str(a["ex_date"])) in days
               for a in corporate_actions(TICKERS, SEED))  # fmt: skip
    assert delisting_dates(TICKERS, SEED)[DELISTED] == daily_days[0]  # a daily run's day is its first without a bar
    assert listing_dates(TICKERS, SEED)[LISTED] in daily_days
    halted = trading_days(*HALT)
    assert len(halted) >= 15 and HALT[0] > FIRST and trading_days(HALT[1] + dt.timedelta(days=1), LAST)[0] == DAILY_FROM


def test_the_stored_bars_hold_the_halt_the_delisting_and_the_listing(spark, warehouses):
    bars = _frame(spark, warehouses, "eq_daily", "stock_prices")
    dates = {t: set(bars.loc[bars["symbol"] == t, "date"]) for t in (HALTED, DELISTED, LISTED)}
    assert not dates[HALTED] & set(trading_days(*HALT)) and DAILY_FROM in dates[HALTED] and FIRST in dates[HALTED]
    assert max(dates[DELISTED]) < DAILY_FROM and min(dates[LISTED]) == listing_dates(TICKERS, SEED)[LISTED]


@pytest.mark.parametrize("name", list(KEYS))
def test_daily_runs_and_a_rerun_leave_the_table_as_the_range_run(spark, warehouses, name):
    _assert_same(_frame(spark, warehouses, "eq_range", name), _frame(spark, warehouses, "eq_daily", name), name)


@pytest.mark.parametrize("name", ["trend_summary", "forecast_metrics"])
def test_the_last_days_summaries_are_the_same_whichever_runs_produced_it(spark, warehouses, name):
    where = f"ds = DATE'{LAST}'"
    _assert_same(_frame(spark, warehouses, "eq_range", name, where), _frame(spark, warehouses, "eq_daily", name, where), name)


def test_daily_runs_score_their_forecasts(spark, warehouses):
    """Every forecast whose target is a day its security traded has its actual; a target in the halt has none (no
    trade, nothing to score); and the last day's metrics count the scored ones."""
    forecasts = _frame(spark, warehouses, "eq_daily", "forecasts")
    bars = _frame(spark, warehouses, "eq_daily", "stock_prices")[["symbol", "date"]].rename(columns={"date": "target_date"})
    traded = forecasts.merge(bars.assign(traded=True), on=["symbol", "target_date"], how="left")["traded"].notna()
    held = (forecasts["target_date"] <= LAST) & traded
    assert forecasts.loc[held, "actual_close"].notna().all()
    assert forecasts.loc[~held, "actual_close"].isna().all()
    in_halt = (forecasts["symbol"] == HALTED) & forecasts["target_date"].between(*HALT)
    assert in_halt.any() and not held[in_halt].any()  # the scenario forecast into the halt
    metrics = _frame(spark, warehouses, "eq_daily", "forecast_metrics", f"ds = DATE'{LAST}'")
    naive = metrics[metrics["model"] == "naive"].set_index("horizon")["n"]
    per_horizon = forecasts[held & (forecasts["model"] == "naive")].groupby("horizon").size()
    assert (naive > 0).all() and naive.sum() <= per_horizon.sum()
