"""The catalog module: tables created once, range writes that refuse stray rows, and maintenance that keeps contents."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality

from lib.settings.config import RunConfig
from lib.storage import catalog

MONTHLY_SCHEMA = catalog.SCHEMAS["monthly_stock_prices"]
PRICES_SCHEMA = catalog.BAR_SCHEMA
MARCH, APRIL = dt.date(2024, 3, 1), dt.date(2024, 4, 1)


def config_for(warehouse, namespace: str) -> RunConfig:
    return RunConfig(ds=dt.date(2024, 4, 2), start_ds=dt.date(2024, 4, 1), warehouse=str(warehouse), namespace=namespace)


@pytest.fixture(scope="module")
def config(spark, warehouse):
    config = config_for(warehouse, "catalog_tests")
    catalog.ensure_tables(spark, config)
    return config


def monthly_row(symbol: str, metric: str, values: list, month: dt.date, from_day: int):
    return (symbol, metric, values, month, month.replace(day=from_day))


def table_layout(config: RunConfig, name: str) -> tuple[list, list]:
    """The table's partition fields (column, transform) and sort columns, as pyiceberg reads them."""
    table = catalog.pyiceberg_catalog(config).load_table(f"{config.namespace}.{name}")
    schema = table.schema()
    partitioning = [(schema.find_column_name(f.source_id), str(f.transform)) for f in table.spec().fields]
    return partitioning, [schema.find_column_name(f.source_id) for f in table.sort_order().fields]


def test_ensure_tables_is_idempotent_and_keeps_rows(spark, warehouse):
    config = config_for(warehouse, "ensure_tables_twice")
    catalog.ensure_tables(spark, config)
    first_tables = sorted(r.tableName for r in spark.sql(f"SHOW TABLES IN {config.catalog}.{config.namespace}").collect())
    layout = table_layout(config, "monthly_stock_prices")
    rows = spark.createDataFrame([monthly_row("AAA", "close", [1.0, None, 3.0], MARCH, 3)], MONTHLY_SCHEMA)
    catalog.overwrite_partitions(config, "monthly_stock_prices", rows)

    catalog.ensure_tables(spark, config)

    tables = sorted(r.tableName for r in spark.sql(f"SHOW TABLES IN {config.catalog}.{config.namespace}").collect())
    assert tables == first_tables == sorted(catalog.SCHEMAS)
    assert table_layout(config, "monthly_stock_prices") == layout
    assert layout == ([("month_start", "identity")], ["symbol", "metric_name"])
    assert catalog.snapshot_count(spark, config, "monthly_stock_prices") == 1
    assert_df_equality(catalog.read_table(spark, config, "monthly_stock_prices"), rows, ignore_row_order=True)


def test_replace_rows_refuses_rows_outside_its_range_and_writes_nothing(spark, config):
    kept = spark.createDataFrame([("AAA", dt.date(2024, 4, 1), 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7)], PRICES_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", kept, "date", dt.date(2024, 4, 1), dt.date(2024, 4, 1))
    snapshots = catalog.snapshot_count(spark, config, "stock_prices")
    straying = spark.createDataFrame(
        [
            ("AAA", dt.date(2024, 4, 2), 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7),
            ("BBB", dt.date(2024, 4, 3), 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7),
        ],
        PRICES_SCHEMA,
    )
    undated = spark.createDataFrame([("AAA", None, 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7)], PRICES_SCHEMA)

    with pytest.raises(ValueError, match=r"outside 2024-04-01\.\.2024-04-02"):
        catalog.replace_rows(spark, config, "stock_prices", straying, "date", dt.date(2024, 4, 1), dt.date(2024, 4, 2))
    with pytest.raises(ValueError, match="outside"):
        catalog.replace_rows(spark, config, "stock_prices", undated, "date", dt.date(2024, 4, 1), dt.date(2024, 4, 2))

    assert catalog.snapshot_count(spark, config, "stock_prices") == snapshots
    assert_df_equality(catalog.read_table(spark, config, "stock_prices").drop("security_id"), kept, ignore_row_order=True)


def test_maintain_compacts_files_and_expires_snapshots_keeping_contents(spark, config):
    # Five small appends to one month (five files) and one to another month (one file): six snapshots.
    batches = [
        [monthly_row(symbol, "close", [float(i), None, float(i) + 0.5], MARCH, 3) for symbol in (f"S{i}A", f"S{i}B")]
        for i in range(5)
    ] + [[monthly_row("ONE", "volume", [None, 1e6], APRIL, 2)]]
    for batch in batches:
        spark.createDataFrame(batch, MONTHLY_SCHEMA).writeTo(config.table("monthly_stock_prices")).append()
    table = config.table("monthly_stock_prices")
    expected = spark.createDataFrame([row for batch in batches for row in batch], MONTHLY_SCHEMA)
    assert catalog.data_file_count(spark, config, "monthly_stock_prices") == 6
    assert catalog.snapshot_count(spark, config, "monthly_stock_prices") == 6

    report = catalog.maintain(spark, config, "monthly_stock_prices", keep_last=1)

    assert report == {
        "data_files_before": 6,
        "data_files_after": 2,  # one per month: March's five packed into one, April's single file untouched
        "rewritten_data_files": 5,
        "added_data_files": 1,
        "snapshots_before": 6,
        "snapshots_after": 1,  # the compaction's
        "deleted_data_files": 5,  # March's five small files, referenced only by the expired snapshots
    }
    files = spark.table(f"{table}.files").select("partition.month_start", "record_count").collect()
    assert sorted((f.month_start, f.record_count) for f in files) == [(MARCH, 10), (APRIL, 1)]
    assert_df_equality(spark.table(table), expected, ignore_row_order=True)

    again = catalog.maintain(spark, config, "monthly_stock_prices", keep_last=1)

    assert (again["rewritten_data_files"], again["data_files_after"], again["snapshots_after"]) == (0, 2, 1)
    assert_df_equality(spark.table(table), expected, ignore_row_order=True)


def test_maintain_compacts_only_the_partitions_named(spark, warehouse):
    config = config_for(warehouse, "maintain_where")
    catalog.ensure_tables(spark, config)
    for month in (MARCH, MARCH, APRIL, APRIL):
        rows = [monthly_row("AAA", "open", [1.0], month, 1)]
        spark.createDataFrame(rows, MONTHLY_SCHEMA).writeTo(config.table("monthly_stock_prices")).append()

    report = catalog.maintain(spark, config, "monthly_stock_prices", keep_last=3, where="month_start >= '2024-04-01'")

    files = spark.table(f"{config.table('monthly_stock_prices')}.files").select("partition.month_start").collect()
    assert sorted(f.month_start for f in files) == [MARCH, MARCH, APRIL]
    assert (report["rewritten_data_files"], report["snapshots_before"], report["snapshots_after"]) == (2, 4, 3)
    assert spark.table(config.table("monthly_stock_prices")).count() == 4


def test_maintain_refuses_to_expire_every_snapshot(spark, config):
    with pytest.raises(ValueError, match="keep_last must be at least 1"):
        catalog.maintain(spark, config, "monthly_stock_prices", keep_last=0)


def test_run_rollup_maintains_the_monthly_table_after_its_write(spark, warehouse):
    from lib.running import steps

    config = config_for(warehouse, "rollup_maintenance")
    catalog.ensure_tables(spark, config)
    prices = spark.createDataFrame(
        [
            (symbol, day, 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7)
            for symbol in ("AAA", "BBB", "CCC")
            for day in (dt.date(2024, 4, 1), dt.date(2024, 4, 2))
        ],
        PRICES_SCHEMA,
    )
    catalog.replace_rows(spark, config, "stock_prices", prices, "date", config.start_ds, config.ds)

    unmaintained = steps.run_rollup(spark, config, keep_snapshots=None)
    steps.run_rollup(spark, config, keep_snapshots=None)
    assert unmaintained.maintenance is None
    assert catalog.snapshot_count(spark, config, "monthly_stock_prices") == 2
    before = spark.table(config.table("monthly_stock_prices")).toPandas()

    report = steps.run_rollup(spark, config, keep_snapshots=1)

    assert report.maintenance["snapshots_after"] == 1
    assert report.maintenance["data_files_after"] == 1  # April in one file
    assert "maintenance: data files" in report.summary()
    assert catalog.snapshot_count(spark, config, "monthly_stock_prices") == 1
    after = spark.table(config.table("monthly_stock_prices"))
    assert after.count() == 3 * 7
    assert_df_equality(after, spark.createDataFrame(before, MONTHLY_SCHEMA), ignore_row_order=True)


def test_a_day_inside_a_range_runs_file_is_replaced_alone_in_one_commit(spark, config):
    """A range run writes one file holding several days; re-running one of them (a past day re-run alone) cannot drop
    that file by the filter, so the write carries the file's other days along: the result is exactly the old days
    plus the new one, in one commit, and no error blames a concurrent run that never was."""
    schema = catalog.SCHEMAS["anomalies"]
    days = [dt.date(2024, 4, d) for d in (1, 2, 3)]
    backfill = spark.createDataFrame(
        [(days[-1], symbol, day, "return", 0.1, 9.0, 8.0, symbol) for day in days for symbol in ("AAA", "BBB")], schema
    ).coalesce(1)
    catalog.replace_rows(spark, config, "anomalies", backfill, "date", days[0], days[-1])
    table = config.table("anomalies")
    assert spark.table(f"{table}.files").count() == 1, "the range run's days must share one file for this test"
    snapshots = catalog.snapshot_count(spark, config, "anomalies")

    rerun = spark.createDataFrame([(days[1], "CCC", days[1], "gap", 0.2, 7.5, 6.0, "CCC")], schema)
    catalog.replace_rows(spark, config, "anomalies", rerun, "date", days[1], days[1])

    expected = spark.createDataFrame(
        [(days[-1], symbol, day, "return", 0.1, 9.0, 8.0, symbol) for day in (days[0], days[2]) for symbol in ("AAA", "BBB")]
        + [(days[1], "CCC", days[1], "gap", 0.2, 7.5, 6.0, "CCC")],
        schema,
    )
    assert_df_equality(spark.table(table), expected, ignore_row_order=True)
    assert catalog.snapshot_count(spark, config, "anomalies") == snapshots + 1

    # Again, now that the middle day has a file of its own: the plain overwrite, the same contents.
    catalog.replace_rows(spark, config, "anomalies", rerun, "date", days[1], days[1])
    assert_df_equality(spark.table(table), expected, ignore_row_order=True)


def test_a_commit_that_still_conflicts_names_what_it_lost_to():
    from lib.core.errors import CommitConflictError

    moved = str(CommitConflictError("stocks.forecasts", "CommitFailedException: x", latest=(42, "2026-12-06 01:02:03")))
    assert "snapshot 42 (committed 2026-12-06 01:02:03), not this write's" in moved and "run the same ds again" in moved
    locked = str(CommitConflictError("stocks.forecasts", "SQLITE_BUSY", busy=True))
    assert "catalog database stayed locked" in locked and "another run committed" not in locked


def _price(symbol: str, day: dt.date, close: float) -> tuple:
    return (symbol, day, close, close + 1, close - 1, close, 1000.0, close, 10)


def test_a_warehouse_with_day_partitions_moves_to_month_partitions_and_reads_the_same(spark, warehouse):
    """A warehouse written by an earlier version (stock_prices partitioned by day) gets month partitions on its next
    run; its old files stay readable, a re-run day replaces exactly that day, and the month then lives in one file."""
    config = config_for(warehouse, "day_partitions_of_old")
    table = config.table("stock_prices")
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {config.catalog}.{config.namespace}")
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in PRICES_SCHEMA.fields)
    spark.sql(f"CREATE TABLE {table} ({columns}) USING iceberg PARTITIONED BY (date)")
    days = [dt.date(2024, 3, d) for d in (26, 27, 28)]
    old = spark.createDataFrame([_price(s, d, 10.0 + i) for i, d in enumerate(days) for s in ("AAA", "BBB")], PRICES_SCHEMA)
    old.writeTo(table).append()
    indicators = catalog.SCHEMAS["technical_indicators"]
    spark.sql(f"CREATE TABLE {config.table('technical_indicators')} "
              f"({', '.join(f'`{f.name}` {f.dataType.simpleString()}' for f in indicators.fields)}) "
              "USING iceberg PARTITIONED BY (date)")  # fmt: skip
    assert table_layout(config, "stock_prices")[0] == [("date", "identity")]

    catalog.ensure_tables(spark, config)

    assert table_layout(config, "stock_prices")[0] == [("date", "month")]
    assert table_layout(config, "technical_indicators")[0] == [("date", "month")]
    assert_df_equality(catalog.read_table(spark, config, "stock_prices").drop("security_id"), old, ignore_row_order=True)
    rerun = spark.createDataFrame([_price("AAA", days[1], 99.0)], PRICES_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", rerun, "date", days[1], days[1])
    expected = spark.createDataFrame(
        [_price(s, d, 10.0 + i) for i, d in enumerate(days) if d != days[1] for s in ("AAA", "BBB")]
        + [_price("AAA", days[1], 99.0)], PRICES_SCHEMA)  # fmt: skip
    assert_df_equality(catalog.read_table(spark, config, "stock_prices").drop("security_id"), expected, ignore_row_order=True)
    files = spark.table(f"{table}.files").select("partition").collect()
    assert len(files) == 1, "the month's day files are rewritten as the month's one file"


def test_a_daily_write_to_a_month_partition_keeps_the_months_other_days(spark, warehouse):
    config = config_for(warehouse, "month_partitions")
    catalog.ensure_tables(spark, config)
    march = [dt.date(2024, 3, d) for d in (1, 4, 5)]
    for i, day in enumerate(march):  # one daily run after another
        rows = spark.createDataFrame([_price("AAA", day, 10.0 + i)], PRICES_SCHEMA)
        catalog.replace_rows(spark, config, "stock_prices", rows, "date", day, day)
    catalog.replace_rows(spark, config, "stock_prices", spark.createDataFrame([_price("AAA", march[1], 50.0)],
                         PRICES_SCHEMA), "date", march[1], march[1])  # fmt: skip
    expected = spark.createDataFrame([_price("AAA", march[0], 10.0), _price("AAA", march[1], 50.0),
                                      _price("AAA", march[2], 12.0)], PRICES_SCHEMA)  # fmt: skip
    assert_df_equality(catalog.read_table(spark, config, "stock_prices").drop("security_id"), expected, ignore_row_order=True)
    assert spark.table(f"{config.table('stock_prices')}.files").count() == 1


def test_the_session_takes_new_catalog_connections_and_sees_another_writers_commit(spark, warehouse):
    """Another connection (pyiceberg here; a run in another process in life) commits; the session's renewed catalog
    connections read that commit and write after it (what with_commit_retry does on SQLITE_BUSY_SNAPSHOT)."""
    import pyarrow as pa

    from lib.storage.session import renew_catalog_connections

    config = config_for(warehouse, "renewed_connections")
    catalog.ensure_tables(spark, config)
    table = catalog.pyiceberg_catalog(config).load_table(f"{config.namespace}.anomalies")
    other = {"ds": APRIL, "symbol": "OTHER", "date": APRIL, "kind": "gap", "value": 1.0, "score": 2.0, "threshold": 1.0}
    table.append(pa.Table.from_pylist([other], schema=table.schema().as_arrow()))

    assert renew_catalog_connections(spark) == ["local"]
    ours = spark.createDataFrame([(APRIL, "OURS", dt.date(2024, 4, 2), "gap", 1.0, 2.0, 1.0, "OURS")],
                                 catalog.SCHEMAS["anomalies"])  # fmt: skip
    catalog.replace_rows(spark, config, "anomalies", ours, "date", dt.date(2024, 4, 2), dt.date(2024, 4, 2))
    assert sorted(r.symbol for r in catalog.read_table(spark, config, "anomalies").collect()) == ["OTHER", "OURS"]
