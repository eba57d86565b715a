"""The JVM-free reader returns the same daily values as the Spark path over the same monthly arrays."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from lib.core.trading_days import trading_days
from lib.running import steps
from lib.settings.config import RunConfig
from lib.storage import catalog, lake_reader, monthly


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
    prices = spark.createDataFrame(rows, catalog.BAR_SCHEMA)
    catalog.overwrite_partitions(config, "monthly_stock_prices", monthly.apply_days(prices, None, days))

    quick = lake_reader.read_daily(config, ["AAA", "BBB"], config.start_ds, config.ds)
    via_spark = (
        steps.trend_daily_rows(spark, config, config.start_ds)
        .filter(F.col("symbol").isin("AAA", "BBB"))
        .orderBy("symbol", "date")
        .toPandas()
    )
    # The Spark path also names each bar's security (analyses run per security): here none is known, so the ticker.
    assert (via_spark.pop("security_id") == via_spark["symbol"]).all()
    assert list(quick.columns) == list(via_spark.columns)
    assert len(quick) == 2 * 5 - 1  # 2024-02-28..03-05: five market days, AAA misses one
    assert dt.date(2024, 3, 1) not in set(quick[quick.symbol == "AAA"]["date"])
    assert quick["date"].min() == dt.date(2024, 2, 28)  # 02-27 is in the array but before the span
    pd.testing.assert_frame_equal(
        quick.astype({"transactions": "float64"}).reset_index(drop=True),
        via_spark.astype({"transactions": "float64"}).reset_index(drop=True),
        check_dtype=False,
    )


def _monthly_rows(spark, config, symbols):
    days = trading_days(dt.date(2024, 1, 29), dt.date(2024, 2, 2))
    rows = [(s, d, 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 1000.0 + i, 10.2 + i, 7 + i)
            for i, d in enumerate(days) for s in symbols]  # fmt: skip
    prices = spark.createDataFrame(rows, catalog.BAR_SCHEMA)
    catalog.overwrite_partitions(config, "monthly_stock_prices", monthly.apply_days(prices, None, days))


def _sorted(table):
    return table.sort_by([("symbol", "ascending"), ("metric_name", "ascending"), ("month_start", "ascending")])


def test_scan_symbols_equals_pyiceberg_and_honours_deletes(spark, warehouse):
    from pyiceberg.expressions import In

    config = RunConfig.from_params(ds="2024-02-02", warehouse=str(warehouse), namespace="quickscan")
    catalog.ensure_tables(spark, config)
    _monthly_rows(spark, config, [f"S{i:03d}" for i in range(200)])
    table = catalog.pyiceberg_catalog(config).load_table("quickscan.monthly_stock_prices")
    fields = ("symbol", "metric_name", "metric_array", "month_start")
    wanted = ["S007", "s150", "NOPE"]
    fast = lake_reader.scan_symbols(table, wanted, fields, months=(dt.date(2024, 2, 1), dt.date(2024, 2, 29)))
    reference = table.scan(row_filter=In("symbol", ["S007", "S150"]), selected_fields=fields).to_arrow()
    reference = reference.filter(pc.equal(reference["month_start"], pa.scalar(dt.date(2024, 2, 1))))
    assert fast.num_rows == 2 * len(monthly.METRICS)
    assert _sorted(fast).equals(_sorted(reference))

    # A merge-on-read delete leaves a delete file the data files alone do not show: the scan must still drop the rows.
    name = catalog.table_identifier(config, "monthly_stock_prices")
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('write.delete.mode'='merge-on-read')")
    spark.sql(f"DELETE FROM {name} WHERE symbol = 'S007' AND metric_name = 'close'")
    table = table.refresh()
    assert any(task.delete_files for task in table.scan().plan_files())
    after = lake_reader.scan_symbols(table, ["S007"], fields)
    assert sorted(set(after["metric_name"].to_pylist())) == sorted(set(monthly.METRICS) - {"close"})
    assert after.num_rows == 2 * (len(monthly.METRICS) - 1)  # two months, the close arrays gone


def test_monthly_table_gets_small_row_groups_new_or_old(spark, warehouse):
    config = RunConfig.from_params(ds="2024-02-02", warehouse=str(warehouse), namespace="rowgroups")
    catalog.ensure_tables(spark, config)
    name = catalog.table_identifier(config, "monthly_stock_prices")
    key = "write.parquet.row-group-size-bytes"
    props = lambda: {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}  # noqa: E731
    assert props()[key] == str(1 << 20)
    spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES ('{key}')")  # a warehouse made before the property
    assert key not in props()
    catalog.ensure_tables(spark, config)
    assert props()[key] == str(1 << 20)
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('{key}'='4194304')")  # the user's own value is kept
    catalog.ensure_tables(spark, config)
    assert props()[key] == "4194304"
