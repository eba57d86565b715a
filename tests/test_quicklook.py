"""The JVM-free reader returns the same daily values as the Spark path over the same monthly arrays."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import functions as F

from lib import catalog, monthly, quicklook, steps
from lib.config import RunConfig
from lib.trading_days import trading_days


def test_quicklook_equals_the_spark_path(spark, warehouse):
    config = RunConfig.from_params(ds="2024-03-05", start_ds="2024-02-28", warehouse=str(warehouse), namespace="quicklook")
    catalog.ensure_tables(spark, config)
    days = trading_days(dt.date(2024, 2, 27), dt.date(2024, 3, 5))
    rows = [
        (symbol, day, 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 1000.0 * (i + 1), None if symbol == "BBB" else 10.2 + i,
         None if symbol == "BBB" else 7 + i)
        for i, day in enumerate(days) for symbol in ("AAA", "BBB", "CCC")
        if not (symbol == "AAA" and day == dt.date(2024, 3, 1))  # a missing bar
    ]  # fmt: skip
    prices = spark.createDataFrame(rows, catalog.SCHEMAS["stock_prices"])
    catalog.overwrite_partitions(config, "monthly_stock_prices", monthly.apply_days(prices, None, days))

    quick = quicklook.read_daily(config, ["AAA", "BBB"], config.start_ds, config.ds)
    via_spark = (
        steps.trend_daily_rows(spark, config, config.start_ds)
        .filter(F.col("symbol").isin("AAA", "BBB"))
        .orderBy("symbol", "date")
        .toPandas()
    )
    assert list(quick.columns) == list(via_spark.columns)
    assert len(quick) == 2 * 5 - 1  # 2024-02-28..03-05: five market days, AAA misses one
    assert dt.date(2024, 3, 1) not in set(quick[quick.symbol == "AAA"]["date"])
    assert quick["date"].min() == dt.date(2024, 2, 28)  # 02-27 is in the array but before the span
    pd.testing.assert_frame_equal(
        quick.astype({"transactions": "float64"}).reset_index(drop=True),
        via_spark.astype({"transactions": "float64"}).reset_index(drop=True),
        check_dtype=False,
    )
