"""technical_indicators for the day after N years: the daily run's fold from stored state against folding every bar.

A warehouse holds N years of simulator bars (`stock_prices`, written through the workspace's own replace) and the
indicators of every day but the last, computed by one backfill. Then the last day is computed twice, on the same
warehouse and session: the baseline folds each symbol's whole history again and replaces the day (what every
daily run did before the state was stored), and the daily run (`steps.run_indicators` for that day) continues from
the state stored with the day before. Both are timed best of two, and the stored rows of the day are checked equal
to a fold over every bar. The ratio is what the state saves; it grows with the history.
Default 3,000 tickers over 1 and 3 years; `--quick`: 300 tickers over 1 and 2 years.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from lib.analytics import indicators
from lib.core.trading_days import trading_days
from lib.running import runtime, steps
from lib.settings.config import RunConfig
from lib.simulator import bars_for_day
from lib.storage import catalog

LAST_DAY = dt.date(2025, 12, 31)


def _prices(spark, tickers: int, days: list[dt.date]):
    rows = []
    for day in days:
        for bar in bars_for_day(day, n=tickers, adjusted=False):
            rows.append((bar["T"], day, bar["o"], bar["h"], bar["l"], bar["c"], float(bar["v"]), bar.get("vw"), bar.get("n")))
    frame = pd.DataFrame(rows, columns=[f.name for f in catalog.BAR_SCHEMA][:9])
    return spark.createDataFrame(frame, catalog.BAR_SCHEMA)


def _best_of_two(action) -> float:
    times = []
    for _ in range(2):
        started = time.monotonic()
        action()
        times.append(time.monotonic() - started)
    return min(times)


def measure(spark, root: Path, tickers: int, years: int) -> tuple[float, float]:
    days = trading_days(LAST_DAY - dt.timedelta(days=365 * years - 1), LAST_DAY)
    base = dict(warehouse=str(root / "warehouse"), namespace=f"ind_{tickers}_{years}")
    backfill = RunConfig.from_params(**base, start_ds=str(days[0]), ds=str(days[-2]))
    catalog.ensure_tables(spark, backfill)
    prices = _prices(spark, tickers, days)
    catalog.replace_rows(spark, backfill, "stock_prices", prices, "date", days[0], days[-1])
    steps.run_indicators(spark, backfill)
    daily = RunConfig.from_params(**base, start_ds=str(days[-1]), ds=str(days[-1]))
    whole = steps.adjusted_history(spark, daily, "split")

    def baseline():  # what run_indicators did before the state: fold every bar, keep the day, replace it
        values = indicators.technical_indicators(whole).filter(F.col("date") == F.lit(days[-1]))
        catalog.replace_rows(spark, daily, "technical_indicators", values.localCheckpoint(eager=True), "date",
                             days[-1], days[-1])  # fmt: skip

    folded = _best_of_two(baseline)
    from_state = _best_of_two(lambda: steps.run_indicators(spark, daily))
    stored = catalog.read_table(spark, daily, "technical_indicators").filter(F.col("date") == F.lit(days[-1]))
    expected = indicators.technical_indicators(whole).filter(F.col("date") == F.lit(days[-1]))
    columns = list(indicators.INDICATOR_COLUMNS)
    got = stored.select("symbol", *columns).orderBy("symbol").toPandas()
    want = expected.select("symbol", *columns).orderBy("symbol").toPandas()
    pd.testing.assert_frame_equal(got, want, rtol=0, atol=0)
    return folded, from_state


def main(quick: bool = False) -> None:
    tickers, spans = (300, (1, 2)) if quick else (3_000, (1, 3))
    root = Path(tempfile.mkdtemp(prefix="bench_indicators_"))
    try:
        config = RunConfig.from_params(warehouse=str(root / "warehouse"), ds=str(LAST_DAY))
        spark = runtime.spark_session(config)
        print(f"{'history':>8} {'tickers':>8} {'fold all bars (baseline)':>26} {'from stored state':>18} {'ratio':>6}")
        for years in spans:
            folded, from_state = measure(spark, root, tickers, years)
            print(f"{years:>6} y {tickers:>8,} {folded:>24.1f} s {from_state:>16.1f} s {folded / from_state:>5.1f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
