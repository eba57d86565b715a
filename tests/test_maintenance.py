"""The namespace's upkeep after a publish: snapshots expired once enough are due, run tags retired at their age, the
months a run wrote compacted, an audit branch left alone, and contents the same before and after.

Real Spark and Iceberg tables in the SQLite catalog; what maintenance did is read back through Spark's metadata tables
and pyiceberg, not through the counts it reports.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from lib.core.errors import ConfigError
from lib.settings.config import RunConfig
from lib.storage import catalog, lake_reader, wap

PRICES = catalog.SCHEMAS["stock_prices"]
RAW = catalog.SCHEMAS["raw_daily_bars"]
METRICS = catalog.SCHEMAS["forecast_metrics"]
TRENDS = catalog.SCHEMAS["trend_summary"]
DAY_MS = 24 * 3600 * 1000


def config_for(warehouse, namespace: str) -> RunConfig:
    return RunConfig(ds=dt.date(2024, 3, 5), start_ds=dt.date(2024, 3, 1), warehouse=str(warehouse), namespace=namespace)


def price(symbol: str, day: dt.date, close: float):
    return (symbol, day, close, close + 1, close - 1, close, 100.0, close, 7, symbol)


def raw_bar(symbol: str, day: dt.date, close: float):
    return (*price(symbol, day, close)[:9], day, "grouped", dt.datetime(2024, 3, 8, 21, 0))


def rows(spark, config: RunConfig, name: str, version: str | None = None) -> list:
    """Every row of the table (at a tag or branch when named), sorted: what a reader sees."""
    at = f" VERSION AS OF '{version}'" if version else ""
    return sorted(spark.sql(f"SELECT * FROM {catalog.table_identifier(config, name)}{at}").collect())


def snapshot_ids(spark, config: RunConfig, name: str) -> set[int]:
    return {r.snapshot_id for r in spark.table(catalog.table_identifier(config, name, "snapshots")).collect()}


def files_by_month(spark, config: RunConfig, name: str) -> dict[tuple, int]:
    """Data files per (year, month) of their rows, from Spark's files table."""
    files = spark.table(catalog.table_identifier(config, name, "files")).select("readable_metrics.date.lower_bound")
    return dict(Counter((row.lower_bound.year, row.lower_bound.month) for row in files.collect()))


@pytest.fixture(scope="module")
def config(spark, warehouse):
    config = config_for(warehouse, "maintenance_tests")
    catalog.ensure_tables(spark, config)
    return config


def test_snapshots_are_expired_only_when_more_than_keep_last_are_due_and_contents_stay(spark, config):
    for day in (1, 4, 5):  # three commits: main's last stays, 2 are due (more than keep_last)
        metrics = [(dt.date(2024, 3, day), "naive", 1, 10, 1.0 * day, 1.5, 2.0, 0.5, None)]
        spark.createDataFrame(metrics, METRICS).writeTo(config.table("forecast_metrics")).append()
    for day in (1, 4):  # two commits: 1 due, not more than keep_last
        trend = [(dt.date(2024, 3, day), "AAA", "raw", dt.date(2024, 1, 2), dt.date(2024, 3, day), 40, 1.0, 1.1, 0.1, 0.2,
                  -0.05, "AAA")]  # fmt: skip
        spark.createDataFrame(trend, TRENDS).writeTo(config.table("trend_summary")).append()
    before = {name: rows(spark, config, name) for name in ("forecast_metrics", "trend_summary")}
    trend_snapshots = snapshot_ids(spark, config, "trend_summary")
    current = catalog.refs(spark, config, "forecast_metrics")["main"][1]

    report = catalog.maintain_tables(spark, config, keep_last=1, days=[])

    assert snapshot_ids(spark, config, "forecast_metrics") == {current}
    assert snapshot_ids(spark, config, "trend_summary") == trend_snapshots
    assert {name: rows(spark, config, name) for name in before} == before
    assert report["forecast_metrics"] == {
        "snapshots_before": 3, "snapshots_after": 1, "expired_snapshots": 2, "rewritten_data_files": 0,
        "added_data_files": 0, "deleted_data_files": 0,  # appends: every file is still in the current snapshot
        "retired_tags": [], "kept_for_branches": [],
    }  # fmt: skip
    assert (report["trend_summary"]["snapshots_after"], report["trend_summary"]["expired_snapshots"]) == (2, 0)
    assert set(report) == set(catalog.SCHEMAS)  # every table of the namespace was looked at
    assert wap.maintenance_summary(report) == "2 snapshots expired in 1 table"


def _tag_with_max_age(spark, config: RunConfig, name: str, tag: str, snapshot_id: int, max_ref_age_ms: int) -> None:
    """A tag through Iceberg's own Java API, with a max-ref-age Spark SQL cannot give (it counts in minutes at least)."""
    table = spark._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, config.table(name))
    table.manageSnapshots().createTag(tag, snapshot_id).setMaxRefAgeMs(tag, max_ref_age_ms).commit()


def test_a_run_tag_within_its_age_stays_readable_and_one_past_it_is_retired(spark, config):
    """Iceberg measures a tag's age from its snapshot's timestamp_ms, so no tag can be made old: the run tag past its
    age gets a max-ref-age of 1 ms (the property tag_main sets to keep_run_tags_days days), which has passed."""
    snapshots = []
    for day, close in ((1, 10.0), (4, 11.0), (5, 12.0), (6, 13.0)):  # each rewrites March-to-date: one commit a day
        bars = spark.createDataFrame([price("AAA", dt.date(2024, 3, day), close)], PRICES)
        catalog.replace_rows(spark, config, "stock_prices", bars, "date", dt.date(2024, 3, day), dt.date(2024, 3, day))
        snapshots.append(catalog.refs(spark, config, "stock_prices")["main"][1])
        if day == 1:
            _tag_with_max_age(spark, config, "stock_prices", "run-2024-03-01", snapshots[-1], max_ref_age_ms=1)
        if day == 4:
            catalog.tag_main(spark, config, "stock_prices", "run-2024-03-04", retain_days=config.keep_run_tags_days)
    before, as_of_run = rows(spark, config, "stock_prices"), rows(spark, config, "stock_prices", "run-2024-03-04")
    assert [r.date.day for r in as_of_run] == [1, 4]

    not_due = catalog.maintain_tables(spark, config, keep_last=3, days=[])  # 1 snapshot due: the tag goes all the same

    assert not_due["stock_prices"]["retired_tags"] == ["run-2024-03-01"]
    assert snapshot_ids(spark, config, "stock_prices") == set(snapshots)
    assert "run-2024-03-01" not in catalog.refs(spark, config, "stock_prices")

    report = catalog.maintain_tables(spark, config, keep_last=1, days=[])

    table = catalog.pyiceberg_catalog(config).load_table(f"{config.namespace}.stock_prices")
    assert table.metadata.refs["run-2024-03-04"].max_ref_age_ms == config.keep_run_tags_days * DAY_MS
    assert snapshot_ids(spark, config, "stock_prices") == {snapshots[1], snapshots[3]}  # the live tag's and main's
    assert rows(spark, config, "stock_prices") == before
    assert rows(spark, config, "stock_prices", "run-2024-03-04") == as_of_run
    read_by_tag = table.scan(snapshot_id=lake_reader.snapshot_of_run(table, dt.date(2024, 3, 4))).to_pandas()
    assert sorted(zip(read_by_tag["date"], read_by_tag["close"], strict=True)) == [(r.date, r.close) for r in as_of_run]
    with pytest.raises(ConfigError, match="has no tag run-2024-03-01"):
        lake_reader.snapshot_of_run(table, dt.date(2024, 3, 1))
    assert report["stock_prices"]["expired_snapshots"] == 2
    assert report["stock_prices"]["deleted_data_files"] == 2  # of the 1st and 3rd commits: in no kept snapshot


def test_a_table_holding_an_audit_branch_keeps_its_snapshots_and_files(spark, config):
    """A failed gate keeps its branch for inspection: that table is neither compacted nor expired."""
    for day in (4, 5, 6):  # appends: three files in March, three snapshots
        bars = spark.createDataFrame([raw_bar("AAA", dt.date(2024, 3, day), 10.0 + day)], RAW)
        bars.writeTo(config.table("raw_daily_bars")).append()
    catalog.create_branch(spark, config, "raw_daily_bars", "audit_2024_03_07")
    staged = spark.createDataFrame([raw_bar("AAA", dt.date(2024, 3, 7), 99.0)], RAW)
    staged.writeTo(f"{config.table('raw_daily_bars')}.branch_audit_2024_03_07").append()
    before, on_branch = rows(spark, config, "raw_daily_bars"), rows(spark, config, "raw_daily_bars", "audit_2024_03_07")
    kept = snapshot_ids(spark, config, "raw_daily_bars")

    report = catalog.maintain_tables(spark, config, keep_last=1, days=[dt.date(2024, 3, 7)])

    assert snapshot_ids(spark, config, "raw_daily_bars") == kept
    assert files_by_month(spark, config, "raw_daily_bars") == {(2024, 3): 3}
    assert rows(spark, config, "raw_daily_bars") == before
    assert rows(spark, config, "raw_daily_bars", "audit_2024_03_07") == on_branch
    assert report["raw_daily_bars"]["kept_for_branches"] == ["audit_2024_03_07"]
    assert "1 table not expired while audit_2024_03_07 exists" in wap.maintenance_summary(report)
    catalog.drop_branch(spark, config, "raw_daily_bars", "audit_2024_03_07")


def test_publish_compacts_the_months_the_run_wrote_and_reports_each_table(spark, warehouse):
    config = config_for(warehouse, "maintenance_publish")  # a run of 2024-03-01..05 writing main (no audit branch)
    catalog.ensure_tables(spark, config)
    for day in (dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2024, 3, 1), dt.date(2024, 3, 4), dt.date(2024, 3, 5)):
        spark.createDataFrame([price("AAA", day, 10.0), price("BBB", day, 20.0)], PRICES).writeTo(
            config.table("stock_prices")
        ).append()  # a file per day
    before = rows(spark, config, "stock_prices")

    report = wap.publish(spark, config)

    assert files_by_month(spark, config, "stock_prices") == {(2024, 2): 2, (2024, 3): 1}  # February: not this run's
    assert rows(spark, config, "stock_prices") == before
    assert rows(spark, config, "stock_prices", "run-2024-03-05") == before  # the tag holds the compacted snapshot
    prices = report.maintenance["stock_prices"]
    assert (prices["rewritten_data_files"], prices["added_data_files"]) == (3, 1)
    assert set(report.maintenance) == set(catalog.SCHEMAS)
    assert report.summary() == (
        "no audit branch (wap_branch is empty): the run wrote main directly; tagged run-2024-03-05; "
        "maintenance: 3 small files compacted into 1"
    )
