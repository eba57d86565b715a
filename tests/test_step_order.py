"""A step opened before the one that feeds it says which notebook to run first, before any long work."""

from __future__ import annotations

import datetime as dt

import pytest

from lib.core.errors import MissingInputError
from lib.running import steps
from lib.settings.config import RunConfig
from lib.storage import catalog

PRICES_SCHEMA = catalog.BAR_SCHEMA
MONDAY, TUESDAY = dt.date(2024, 4, 1), dt.date(2024, 4, 2)


def config_for(warehouse, namespace: str, **overrides) -> RunConfig:
    values = dict(ds=TUESDAY, start_ds=MONDAY, warehouse=str(warehouse), namespace=namespace)
    return RunConfig(**{**values, **overrides})


def test_rollup_before_ingest_names_01_ingest(spark, warehouse):
    config = config_for(warehouse, "order_empty")
    with pytest.raises(MissingInputError) as raised:
        steps.run_rollup(spark, config)
    message = str(raised.value)
    assert "stock_prices" in message and "2024-04-01..2024-04-02" in message
    assert "run 01_ingest for this span first" in message


def test_quality_and_trends_before_rollup_name_both_notebooks(spark, warehouse):
    config = config_for(warehouse, "order_no_rollup")
    catalog.ensure_tables(spark, config)
    prices = spark.createDataFrame([("AAA", MONDAY, 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7)], PRICES_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", prices, "date", MONDAY, TUESDAY)

    for run in (steps.run_quality, steps.run_trends):
        with pytest.raises(MissingInputError, match="monthly_stock_prices .* run 01_ingest then 02_monthly_rollup"):
            run(spark, config)


def test_a_span_without_market_days_is_an_empty_run_not_an_error(spark, warehouse):
    saturday = dt.date(2024, 4, 6)
    config = config_for(warehouse, "order_weekend", ds=saturday, start_ds=saturday)
    report = steps.run_rollup(spark, config)
    assert report.applied_days == [] and "empty run" in report.summary()


def test_rollup_after_ingest_runs(spark, warehouse):
    config = config_for(warehouse, "order_ok")
    catalog.ensure_tables(spark, config)
    prices = spark.createDataFrame(
        [(symbol, day, 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7) for symbol in ("AAA", "BBB") for day in (MONDAY, TUESDAY)],
        PRICES_SCHEMA,
    )
    catalog.replace_rows(spark, config, "stock_prices", prices, "date", MONDAY, TUESDAY)
    report = steps.run_rollup(spark, config, keep_snapshots=None)
    assert report.symbols == 2 and report.applied_days == [MONDAY, TUESDAY]


def test_trends_on_a_namespace_never_written_names_the_first_notebooks(spark, warehouse):
    config = config_for(warehouse, "order_fresh")
    with pytest.raises(MissingInputError, match="run 01_ingest then 02_monthly_rollup"):
        steps.run_trends(spark, config)
