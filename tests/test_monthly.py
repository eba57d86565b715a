"""Unit tests of lib.storage.monthly: placing daily bars into monthly arrays (incremental, late, range) and back."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lib.storage.monthly import (
    METRICS,
    MONTHLY_SCHEMA,
    apply_days,
    daily_rows,
    explode_metrics,
    month_start,
    monthly_from_prices,
    to_daily_rows,
)

D = dt.date
PRICES_DDL = (
    "symbol STRING, date DATE, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, "
    "volume DOUBLE, vwap DOUBLE, transactions BIGINT"
)
EXPLODED_DDL = "symbol STRING, date DATE, metric_name STRING, value DOUBLE"
MARCH = D(2024, 3, 1)
FEBRUARY = D(2024, 2, 1)


@pytest.fixture(autouse=True)
def ansi_mode(spark):
    """Run every test under ANSI mode (Spark 4's default), where unsafe array indexing raises."""
    previous = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    yield
    spark.conf.set("spark.sql.ansi.enabled", previous)


# Test bars derive every metric from one `base` number, each metric differently, so an expected
# frame is written as one list of bases per symbol (None = no bar that day) and a swapped metric shows.
def metric_values(base: float) -> dict[str, float]:
    return {
        "open": base,
        "high": base + 2,
        "low": base - 1,
        "close": base + 1,
        "volume": base * 1000,
        "vwap": base + 0.5,
        "transactions": base * 10,
    }


def bar(symbol: str, day: dt.date, base: float) -> tuple:
    values = metric_values(base)
    return (symbol, day, *(values[m] for m in METRICS[:-1]), int(values["transactions"]))


def prices_df(spark, bars):
    return spark.createDataFrame(bars, PRICES_DDL)


def monthly_rows(symbol: str, month: dt.date, from_date: dt.date, bases: list[float | None]) -> list[tuple]:
    return [
        (symbol, metric, [None if b is None else metric_values(b)[metric] for b in bases], month, from_date) for metric in METRICS
    ]


def monthly_df(spark, *row_groups):
    return spark.createDataFrame([row for group in row_groups for row in group], MONTHLY_SCHEMA)


def assert_same_rows(actual, expected):
    assert_df_equality(actual, expected, ignore_row_order=True)


def store(spark, table, new_month_rows):
    """What the caller does with apply_days' output: overwrite the touched months of the table.

    Materialized (tiny data), like a table read back, so chained calls do not grow one ever larger plan.
    """
    new_rows = new_month_rows.collect()
    touched_months = {row.month_start for row in new_rows}
    kept_rows = [] if table is None else [row for row in table.collect() if row.month_start not in touched_months]
    return spark.createDataFrame(kept_rows + new_rows, MONTHLY_SCHEMA)


def apply_one_by_one(spark, prices, table, days):
    for day in days:
        table = store(spark, table, apply_days(prices, table, [day]))
    return table


def test_month_start_and_schema():
    assert month_start(D(2024, 2, 29)) == D(2024, 2, 1)
    assert month_start(D(2024, 3, 1)) == D(2024, 3, 1)
    assert MONTHLY_SCHEMA.simpleString() == (
        "struct<symbol:string,metric_name:string,metric_array:array<double>,month_start:date,from_date:date>"
    )
    assert METRICS == ("open", "high", "low", "close", "volume", "vwap", "transactions")


def test_first_day_of_month_starts_new_arrays_and_returns_only_that_month(spark):
    existing = monthly_df(spark, monthly_rows("AAA", FEBRUARY, D(2024, 2, 29), [None] * 28 + [9.0]))
    prices = prices_df(
        spark,
        [
            ("AAA", D(2024, 2, 29), 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9),  # another date: must be ignored
            ("AAA", D(2024, 3, 1), 10.0, 12.0, 9.0, 11.0, 10000.0, 10.5, 100),
        ],
    )

    result = apply_days(prices, existing, [D(2024, 3, 1)])

    expected = spark.createDataFrame(
        [
            ("AAA", "open", [10.0], MARCH, D(2024, 3, 1)),
            ("AAA", "high", [12.0], MARCH, D(2024, 3, 1)),
            ("AAA", "low", [9.0], MARCH, D(2024, 3, 1)),
            ("AAA", "close", [11.0], MARCH, D(2024, 3, 1)),
            ("AAA", "volume", [10000.0], MARCH, D(2024, 3, 1)),
            ("AAA", "vwap", [10.5], MARCH, D(2024, 3, 1)),
            ("AAA", "transactions", [100.0], MARCH, D(2024, 3, 1)),
        ],
        MONTHLY_SCHEMA,
    )
    assert result.schema == MONTHLY_SCHEMA
    assert_same_rows(result, expected)


def test_weekend_gap_and_symbol_without_bar_on_from_date(spark):
    existing = monthly_df(
        spark,
        monthly_rows("AAA", MARCH, D(2024, 3, 1), [10.0]),
        monthly_rows("BBB", MARCH, D(2024, 3, 1), [20.0]),
    )
    prices = prices_df(spark, [bar("AAA", D(2024, 3, 4), 11.0)])  # BBB has no bar on Monday 4th

    result = apply_days(prices, existing, [D(2024, 3, 4)])

    expected = monthly_df(
        spark,
        monthly_rows("AAA", MARCH, D(2024, 3, 4), [10.0, None, None, 11.0]),
        monthly_rows("BBB", MARCH, D(2024, 3, 4), [20.0, None, None, None]),
    )
    assert_same_rows(result, expected)


def test_symbol_appearing_mid_month_is_padded_at_the_front(spark):
    existing = monthly_df(spark, monthly_rows("AAA", MARCH, D(2024, 3, 4), [10.0, None, None, 11.0]))
    prices = prices_df(spark, [bar("AAA", D(2024, 3, 5), 12.0), bar("NEW", D(2024, 3, 5), 50.0)])

    result = apply_days(prices, existing, [D(2024, 3, 5)])

    expected = monthly_df(
        spark,
        monthly_rows("AAA", MARCH, D(2024, 3, 5), [10.0, None, None, 11.0, 12.0]),
        monthly_rows("NEW", MARCH, D(2024, 3, 5), [None, None, None, None, 50.0]),
    )
    assert_same_rows(result, expected)


def test_rerunning_a_day_is_idempotent_and_takes_corrected_prices(spark):
    existing = monthly_df(spark, monthly_rows("AAA", MARCH, D(2024, 3, 1), [10.0]))
    prices = prices_df(spark, [bar("AAA", D(2024, 3, 4), 11.0)])

    once = store(spark, existing, apply_days(prices, existing, [D(2024, 3, 4)]))
    twice = apply_days(prices, once, [D(2024, 3, 4)])

    assert_same_rows(twice, monthly_df(spark, monthly_rows("AAA", MARCH, D(2024, 3, 4), [10.0, None, None, 11.0])))
    corrected = apply_days(prices_df(spark, [bar("AAA", D(2024, 3, 4), 13.0)]), twice, [D(2024, 3, 4)])
    assert_same_rows(corrected, monthly_df(spark, monthly_rows("AAA", MARCH, D(2024, 3, 4), [10.0, None, None, 13.0])))


def test_late_day_fills_its_slot_and_keeps_from_date(spark):
    prices = prices_df(
        spark,
        [bar("AAA", D(2024, 3, 27), 27.0), bar("AAA", D(2024, 3, 28), 28.0), bar("LATE", D(2024, 3, 27), 70.0)],
    )
    after_28 = store(spark, None, apply_days(prices, None, [D(2024, 3, 28)]))

    result = apply_days(prices, after_28, [D(2024, 3, 27)])

    expected = monthly_df(
        spark,
        monthly_rows("AAA", MARCH, D(2024, 3, 28), [None] * 26 + [27.0, 28.0]),
        monthly_rows("LATE", MARCH, D(2024, 3, 28), [None] * 26 + [70.0, None]),
    )
    assert_same_rows(result, expected)


def test_order_of_applied_days_does_not_matter(spark):
    days = [D(2024, 3, 26), D(2024, 3, 27), D(2024, 3, 28)]
    prices = prices_df(
        spark,
        [
            bar("AAA", D(2024, 3, 26), 26.0),
            bar("AAA", D(2024, 3, 28), 28.0),
            bar("BBB", D(2024, 3, 27), 37.0),
        ],
    )

    in_order = apply_one_by_one(spark, prices, None, days)
    assert_same_rows(
        in_order,
        monthly_df(
            spark,
            monthly_rows("AAA", MARCH, D(2024, 3, 28), [None] * 25 + [26.0, None, 28.0]),
            monthly_rows("BBB", MARCH, D(2024, 3, 28), [None] * 25 + [None, 37.0, None]),
        ),
    )
    shuffled = [D(2024, 3, 28), D(2024, 3, 26), D(2024, 3, 27)]
    assert_same_rows(apply_one_by_one(spark, prices, None, shuffled), in_order)


def test_range_over_a_month_boundary_equals_day_by_day_and_hand_written(spark):
    existing = monthly_df(spark, monthly_rows("AAA", FEBRUARY, D(2024, 2, 26), [None] * 25 + [1.0]))
    days = [D(2024, 2, 27), D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1), D(2024, 3, 4), D(2024, 3, 5)]
    prices = prices_df(
        spark,
        [
            bar("AAA", D(2024, 2, 26), 99.0),  # already applied: the range must not touch slot 26
            bar("AAA", D(2024, 2, 27), 2.0),
            bar("AAA", D(2024, 2, 29), 4.0),
            bar("AAA", D(2024, 3, 1), 5.0),
            bar("AAA", D(2024, 3, 5), 7.0),
            bar("BBB", D(2024, 2, 28), 30.0),
            bar("BBB", D(2024, 3, 4), 60.0),
            bar("AAA", D(2024, 3, 6), 99.0),  # after the range: ignored
        ],
    )

    in_one_pass = apply_days(prices, existing, days)

    day_by_day = apply_one_by_one(spark, prices, existing, days)

    expected = monthly_df(
        spark,
        monthly_rows("AAA", FEBRUARY, D(2024, 2, 29), [None] * 25 + [1.0, 2.0, None, 4.0]),
        monthly_rows("BBB", FEBRUARY, D(2024, 2, 29), [None] * 25 + [None, None, 30.0, None]),
        monthly_rows("AAA", MARCH, D(2024, 3, 5), [5.0, None, None, None, 7.0]),
        monthly_rows("BBB", MARCH, D(2024, 3, 5), [None, None, None, 60.0, None]),
    )
    assert_same_rows(in_one_pass, expected)
    assert_same_rows(in_one_pass, day_by_day)


def test_no_applied_days_returns_no_rows(spark):
    prices = prices_df(spark, [bar("AAA", D(2024, 3, 1), 1.0)])
    result = apply_days(prices, None, [])
    assert result.schema == MONTHLY_SCHEMA
    assert result.count() == 0


def test_explode_metrics_drops_or_keeps_null_slots(spark):
    monthly = spark.createDataFrame(
        [("AAA", "close", [1.5, None, 2.5], MARCH, D(2024, 3, 3)), ("AAA", "vwap", [None, None, 2.4], MARCH, D(2024, 3, 3))],
        MONTHLY_SCHEMA,
    )

    assert_same_rows(
        explode_metrics(monthly),
        spark.createDataFrame(
            [
                ("AAA", D(2024, 3, 1), "close", 1.5),
                ("AAA", D(2024, 3, 3), "close", 2.5),
                ("AAA", D(2024, 3, 3), "vwap", 2.4),
            ],
            EXPLODED_DDL,
        ),
    )
    assert_same_rows(
        explode_metrics(monthly, keep_nulls=True),
        spark.createDataFrame(
            [
                ("AAA", D(2024, 3, 1), "close", 1.5),
                ("AAA", D(2024, 3, 2), "close", None),
                ("AAA", D(2024, 3, 3), "close", 2.5),
                ("AAA", D(2024, 3, 1), "vwap", None),
                ("AAA", D(2024, 3, 2), "vwap", None),
                ("AAA", D(2024, 3, 3), "vwap", 2.4),
            ],
            EXPLODED_DDL,
        ),
    )


def test_to_daily_rows_skips_days_without_a_bar_and_restores_bigint(spark):
    exploded = spark.createDataFrame(
        [
            ("AAA", D(2024, 3, 1), metric, value)
            for metric, value in zip(METRICS, [1.0, 2.0, 0.5, 1.5, 100.0, None, 7.0], strict=True)
        ]
        + [("AAA", D(2024, 3, 2), metric, None) for metric in METRICS],
        EXPLODED_DDL,
    )

    expected = spark.createDataFrame([("AAA", D(2024, 3, 1), 1.0, 2.0, 0.5, 1.5, 100.0, None, 7)], PRICES_DDL)
    assert_same_rows(to_daily_rows(exploded), expected)


def test_round_trip_daily_rows_to_arrays_and_back(spark):
    days = [D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1), D(2024, 3, 4), D(2024, 3, 28)]
    daily = prices_df(
        spark,
        [
            ("AAA", D(2024, 2, 28), 180.5, 182.25, 179.0, 181.75, 52_345_678.0, 181.1234, 612_345),
            ("AAA", D(2024, 2, 29), 181.0, 183.0, 180.0, 182.0, 1.0e8, 181.9, 9_007_199_254),
            ("AAA", D(2024, 3, 4), 0.0001, 0.0002, 0.0001, 0.00015, 0.0, 0.00012, 0),
            # per_ticker (open-close) bars carry neither vwap nor transactions
            ("BBB", D(2024, 2, 29), 10.0, 11.0, 9.5, 10.5, 1000.0, None, None),
            ("BBB", D(2024, 3, 1), 10.5, 12.0, 10.0, 11.5, 2000.0, None, None),
            # a defect stored as received: null close, high < low
            ("BBB", D(2024, 3, 28), 11.0, 10.0, 12.0, None, 3000.0, None, None),
        ],
    )

    monthly = monthly_from_prices(daily, days)
    round_tripped = to_daily_rows(explode_metrics(monthly))

    assert_same_rows(round_tripped, daily)
    assert_same_rows(to_daily_rows(explode_metrics(monthly, keep_nulls=True)), daily)
    assert_same_rows(daily_rows(monthly), daily)  # the one-shuffle path 04_trends reads by


def test_daily_rows_equals_the_pivot_with_a_metric_missing_and_a_day_without_a_bar(spark):
    """daily_rows zips a month's arrays; a metric with no row that month is all null, a day with no value no row."""
    days = [D(2024, 3, 1), D(2024, 3, 4), D(2024, 3, 5)]
    daily = prices_df(
        spark,
        [
            ("AAA", D(2024, 3, 1), 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7),
            ("AAA", D(2024, 3, 5), 1.1, 2.1, 0.6, 1.6, 110.0, 1.3, 8),
            ("BBB", D(2024, 3, 4), 5.0, 6.0, 4.0, 5.5, 10.0, None, None),
        ],
    )
    monthly = monthly_from_prices(daily, days)
    without_vwap = monthly.filter(~((F.col("symbol") == "AAA") & (F.col("metric_name") == "vwap")))
    expected = to_daily_rows(explode_metrics(without_vwap))
    assert_same_rows(daily_rows(without_vwap), expected)
    assert expected.filter(F.col("vwap").isNull() & (F.col("symbol") == "AAA")).count() == 2
    assert sorted((r.symbol, r.date) for r in daily_rows(monthly).collect()) == [
        ("AAA", D(2024, 3, 1)), ("AAA", D(2024, 3, 5)), ("BBB", D(2024, 3, 4))
    ]  # fmt: skip


def test_applied_days_may_be_unsorted_and_repeated(spark):
    prices = prices_df(spark, [bar("AAA", D(2024, 3, 1), 1.0), bar("AAA", D(2024, 3, 4), 4.0)])

    result = apply_days(prices, None, [D(2024, 3, 4), D(2024, 3, 1), D(2024, 3, 4)])

    assert_same_rows(result, monthly_df(spark, monthly_rows("AAA", MARCH, D(2024, 3, 4), [1.0, None, None, 4.0])))


# ---------------------------------------------------------------------------- late data and the closing checks

THURSDAY, FRIDAY = D(2024, 3, 21), D(2024, 3, 22)


def test_late_thursday_after_friday_keeps_from_date_and_passes_array_integrity(spark):
    from lib.quality.checks import QualityInputs, run_checks

    prices = prices_df(spark, [bar("AAA", THURSDAY, 21.0), bar("AAA", FRIDAY, 22.0), bar("BBB", THURSDAY, 51.0)])
    after_friday = store(spark, None, apply_days(prices, None, [FRIDAY]))

    after_thursday = store(spark, after_friday, apply_days(prices, after_friday, [THURSDAY]))

    expected = monthly_df(
        spark,
        monthly_rows("AAA", MARCH, FRIDAY, [None] * 20 + [21.0, 22.0]),
        monthly_rows("BBB", MARCH, FRIDAY, [None] * 20 + [51.0, None]),
    )
    assert_same_rows(after_thursday, expected)
    # The run for Thursday checks its own span; the month's bars reach Friday, which set from_date.
    inputs = QualityInputs(
        monthly_stock_prices=after_thursday,
        stock_prices=prices.where("date = DATE'2024-03-21'"),
        price_context=prices,
    )
    results = run_checks(inputs, THURSDAY, [THURSDAY], only=["duplicates", "array_integrity"])
    assert [(r.name, r.table_name, r.status) for r in results] == [
        ("duplicates", "stock_prices", "pass"),
        ("duplicates", "monthly_stock_prices", "pass"),
        ("array_integrity", "monthly_stock_prices", "pass"),
    ], [r.details for r in results]


def test_rollup_of_a_late_day_passes_its_closing_checks(spark, warehouse):
    from lib.running import steps
    from lib.settings.config import RunConfig
    from lib.storage import catalog

    def config_for(ds):
        return RunConfig.from_params(ds=ds, warehouse=str(warehouse), namespace="late_rollup")

    friday_run, thursday_run = config_for(FRIDAY.isoformat()), config_for(THURSDAY.isoformat())
    catalog.ensure_tables(spark, friday_run)
    prices = prices_df(
        spark, [bar("AAA", THURSDAY, 21.0), bar("AAA", FRIDAY, 22.0), bar("BBB", THURSDAY, 51.0), bar("BBB", FRIDAY, 52.0)]
    )
    catalog.replace_rows(spark, friday_run, "stock_prices", prices, "date", THURSDAY, FRIDAY)

    steps.run_rollup(spark, friday_run, keep_snapshots=None)
    steps.run_rollup(spark, thursday_run, keep_snapshots=None)  # Thursday's data arrives late

    stored = catalog.read_table(spark, thursday_run, "monthly_stock_prices")
    expected = monthly_df(
        spark,
        monthly_rows("AAA", MARCH, FRIDAY, [None] * 20 + [21.0, 22.0]),
        monthly_rows("BBB", MARCH, FRIDAY, [None] * 20 + [51.0, 52.0]),
    )
    assert_same_rows(stored, expected)
    results = steps.rollup_checks(spark, thursday_run)
    assert [(r.name, r.status) for r in results] == [("duplicates", "pass"), ("array_integrity", "pass")], [
        r.details for r in results
    ]

    # 03_quality's inputs for the same run, in a warehouse without corporate_actions (made before the table was).
    from lib.quality import checks

    spark.sql(f"DROP TABLE {catalog.table_identifier(thursday_run, 'corporate_actions')}")
    inputs = steps.quality_inputs(spark, thursday_run)
    checks = checks.run_checks(inputs, THURSDAY, [THURSDAY], only=["array_integrity", "price_jumps", "corporate_actions"])
    assert [(r.name, r.table_name, r.status, r.failed_rows) for r in checks] == [
        ("array_integrity", "monthly_stock_prices", "pass", 0),
        ("price_jumps", "stock_prices", "pass", 0),
        ("corporate_actions", "corporate_actions", "pass", 0),
    ], [r.details for r in checks]
