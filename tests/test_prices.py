"""lib.prices: as-traded bars read back raw, split-adjusted or total-return, against hand-computed figures.

One warehouse for the module: every scenario is its own symbol, written through the rollup's arrays
(lib.storage.monthly.apply_days) and stock_prices, and its actions through the corporate_actions upsert.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lib import prices as prices_command
from lib.analytics import prices
from lib.settings.config import RunConfig
from lib.storage import catalog, monthly

D = dt.date
ACTIONS_DDL = (
    "symbol STRING, action_type STRING, ex_date DATE, split_from DOUBLE, split_to DOUBLE, cash_amount DOUBLE, "
    "currency STRING, declaration_date DATE, record_date DATE, pay_date DATE, source_id STRING"
)
FIRST_SEEN, CORRECTED_ON = D(2024, 3, 1), D(2024, 3, 4)


def flat_bar(symbol, day, close, volume=1000.0):
    """A bar whose prices all equal its close: one number per day to adjust by hand."""
    return (symbol, day, close, close, close, close, volume, close, 10)


BARS = [
    # SPLT: a 2-for-1 split inside March, ex Wednesday 13th; the 12th has distinct prices.
    flat_bar("SPLT", D(2024, 3, 11), 100.0, 1000.0),
    ("SPLT", D(2024, 3, 12), 101.0, 103.0, 99.0, 102.0, 1200.0, 101.5, 12),
    flat_bar("SPLT", D(2024, 3, 13), 51.0, 2400.0),
    flat_bar("SPLT", D(2024, 3, 14), 52.0, 2600.0),
    # FRST: 3-for-1 ex Monday 2024-04-01, the first session of April, after Good Friday and a weekend.
    flat_bar("FRST", D(2024, 3, 27), 90.0, 100.0),
    flat_bar("FRST", D(2024, 3, 28), 93.0, 300.0),
    flat_bar("FRST", D(2024, 4, 1), 31.5, 900.0),
    flat_bar("FRST", D(2024, 4, 2), 32.0, 600.0),
    # WKND: 4-for-1 ex Tuesday 2024-05-28, after the Memorial Day weekend.
    flat_bar("WKND", D(2024, 5, 23), 200.0, 10.0),
    flat_bar("WKND", D(2024, 5, 24), 204.0, 10.0),
    flat_bar("WKND", D(2024, 5, 28), 52.0, 40.0),
    flat_bar("WKND", D(2024, 5, 29), 53.0, 40.0),
    # RVRS: a 1-for-10 reverse split (split_from 10, split_to 1) ex 2024-02-15.
    flat_bar("RVRS", D(2024, 2, 13), 1.0, 50000.0),
    flat_bar("RVRS", D(2024, 2, 14), 1.1, 40000.0),
    flat_bar("RVRS", D(2024, 2, 15), 11.5, 4000.0),
    # TWO: 2-for-1 ex 2024-06-05 and 3-for-1 ex 2024-06-20 (after Juneteenth), one month.
    flat_bar("TWO", D(2024, 6, 3), 600.0, 10.0),
    flat_bar("TWO", D(2024, 6, 4), 594.0, 10.0),
    flat_bar("TWO", D(2024, 6, 5), 300.0, 20.0),
    flat_bar("TWO", D(2024, 6, 18), 306.0, 20.0),
    flat_bar("TWO", D(2024, 6, 20), 103.0, 60.0),
    # SPDV: 2-for-1 and a $0.50 dividend (per new share) on one ex-date, 2024-03-20.
    flat_bar("SPDV", D(2024, 3, 18), 98.0),
    flat_bar("SPDV", D(2024, 3, 19), 100.0),
    flat_bar("SPDV", D(2024, 3, 20), 49.75),
    flat_bar("SPDV", D(2024, 3, 21), 50.0),
    # YHOO: Yahoo's worked example (closes of February 2003; 2003-02-17 was Presidents' Day).
    flat_bar("YHOO", D(2003, 2, 13), 46.99),
    flat_bar("YHOO", D(2003, 2, 14), 48.30),
    flat_bar("YHOO", D(2003, 2, 18), 24.96),
    flat_bar("YHOO", D(2003, 2, 19), 24.53),
    # CORR: a split first sent as 2-for-1, corrected under the same id to 4-for-1.
    flat_bar("CORR", D(2024, 3, 5), 100.0),
    flat_bar("CORR", D(2024, 3, 6), 25.0),
    # BAD: actions that cannot be right, and one split sent twice.
    *[flat_bar("BAD", D(2024, 3, day), 100.0) for day in (5, 6, 7, 8, 11)],
    flat_bar("BAD", D(2024, 3, 12), 50.0),
]


def split(symbol, ex_date, split_from, split_to, source_id):
    return (symbol, "split", ex_date, split_from, split_to, None, None, None, None, None, source_id)


def dividend(symbol, ex_date, cash_amount, source_id):
    return (symbol, "dividend", ex_date, None, None, cash_amount, "USD", None, None, None, source_id)


ACTIONS = [
    split("SPLT", D(2024, 3, 13), 1.0, 2.0, "S-SPLT"),
    split("FRST", D(2024, 4, 1), 1.0, 3.0, "S-FRST"),
    split("WKND", D(2024, 5, 28), 1.0, 4.0, "S-WKND"),
    split("RVRS", D(2024, 2, 15), 10.0, 1.0, "S-RVRS"),
    split("TWO", D(2024, 6, 5), 1.0, 2.0, "S-TWO-1"),
    split("TWO", D(2024, 6, 20), 1.0, 3.0, "S-TWO-2"),
    split("SPDV", D(2024, 3, 20), 1.0, 2.0, "S-SPDV"),
    dividend("SPDV", D(2024, 3, 20), 0.50, "D-SPDV"),
    split("YHOO", D(2003, 2, 18), 1.0, 2.0, "S-YHOO"),
    dividend("YHOO", D(2003, 2, 19), 0.08, "D-YHOO"),
    split("CORR", D(2024, 3, 6), 1.0, 2.0, "S-CORR"),
    split("BAD", D(2024, 3, 6), 0.0, 2.0, "S-BAD-ZERO"),
    dividend("BAD", D(2024, 3, 7), -1.0, "D-BAD-NEG"),
    dividend("BAD", D(2024, 3, 8), 150.0, "D-BAD-BIG"),
    split("BAD", D(2024, 3, 12), 1.0, 2.0, "S-BAD-A"),
    split("BAD", D(2024, 3, 12), 1.0, 2.0, "S-BAD-B"),
]
CORRECTION = [split("CORR", D(2024, 3, 6), 1.0, 4.0, "S-CORR")]


@pytest.fixture(scope="module")
def config(spark, warehouse):
    config = RunConfig.from_params(ds="2024-06-28", warehouse=str(warehouse), namespace="prices")
    catalog.ensure_tables(spark, config)
    bars = spark.createDataFrame(BARS, catalog.BAR_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", bars, "date", D(2003, 1, 1), D(2024, 12, 31))
    days = sorted({row[1] for row in BARS})
    catalog.overwrite_partitions(config, "monthly_stock_prices", monthly.apply_days(bars, None, days))
    catalog.merge_corporate_actions(spark, config, spark.createDataFrame(ACTIONS, ACTIONS_DDL), FIRST_SEEN)
    catalog.merge_corporate_actions(spark, config, spark.createDataFrame(CORRECTION, ACTIONS_DDL), CORRECTED_ON)
    return config


def flat(symbol, rows):
    """Expected rows of a flat-bar symbol: (date, price, volume) each; every price column equals `price`."""
    return pd.DataFrame(
        [(symbol, day, price, price, price, price, volume, price) for day, price, volume in rows], columns=list(prices.COLUMNS)
    )


def assert_prices(actual: pd.DataFrame, expected: pd.DataFrame, atol: float = 1e-9):
    assert list(actual.columns) == list(prices.READ_COLUMNS)
    # This warehouse has no securities table: each ticker stands for itself (tests/test_identity_reads.py has one).
    assert (actual["security_id"] == actual["symbol"]).all()
    shown = actual.loc[:, list(prices.COLUMNS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(shown, expected, check_dtype=False, atol=atol, rtol=0)


def test_split_inside_a_month(config):
    actual = prices.read(config, ["SPLT"], D(2024, 3, 1), D(2024, 3, 31))
    expected = pd.DataFrame(
        [
            ("SPLT", D(2024, 3, 11), 50.0, 50.0, 50.0, 50.0, 2000.0, 50.0),
            ("SPLT", D(2024, 3, 12), 50.5, 51.5, 49.5, 51.0, 2400.0, 50.75),
            ("SPLT", D(2024, 3, 13), 51.0, 51.0, 51.0, 51.0, 2400.0, 51.0),
            ("SPLT", D(2024, 3, 14), 52.0, 52.0, 52.0, 52.0, 2600.0, 52.0),
        ],
        columns=list(prices.COLUMNS),
    )
    assert_prices(actual, expected)


def test_raw_and_as_of_before_the_ex_date_give_the_prices_as_traded(config):
    as_traded = pd.DataFrame(
        [
            ("SPLT", D(2024, 3, 11), 100.0, 100.0, 100.0, 100.0, 1000.0, 100.0),
            ("SPLT", D(2024, 3, 12), 101.0, 103.0, 99.0, 102.0, 1200.0, 101.5),
            ("SPLT", D(2024, 3, 13), 51.0, 51.0, 51.0, 51.0, 2400.0, 51.0),
            ("SPLT", D(2024, 3, 14), 52.0, 52.0, 52.0, 52.0, 2600.0, 52.0),
        ],
        columns=list(prices.COLUMNS),
    )
    assert_prices(prices.read(config, ["SPLT"], D(2024, 3, 1), D(2024, 3, 31), adjust="raw"), as_traded)
    assert_prices(prices.read(config, ["splt"], D(2024, 3, 1), D(2024, 3, 31), as_of=D(2024, 3, 12)), as_traded)
    # On the ex-date itself the split is known.
    on_the_day = prices.read(config, ["SPLT"], D(2024, 3, 11), D(2024, 3, 11), as_of=D(2024, 3, 13))
    assert on_the_day["close"].tolist() == [50.0]


def test_split_on_the_first_trading_day_of_a_month(config):
    actual = prices.read(config, ["FRST"], D(2024, 3, 25), D(2024, 4, 5))
    expected = flat("FRST", [(D(2024, 3, 27), 30.0, 300.0), (D(2024, 3, 28), 31.0, 900.0),
                             (D(2024, 4, 1), 31.5, 900.0), (D(2024, 4, 2), 32.0, 600.0)])  # fmt: skip
    assert_prices(actual, expected)


def test_split_after_a_holiday_weekend(config):
    actual = prices.read(config, ["WKND"], D(2024, 5, 20), D(2024, 5, 31))
    expected = flat("WKND", [(D(2024, 5, 23), 50.0, 40.0), (D(2024, 5, 24), 51.0, 40.0),
                             (D(2024, 5, 28), 52.0, 40.0), (D(2024, 5, 29), 53.0, 40.0)])  # fmt: skip
    assert_prices(actual, expected)


def test_reverse_split_one_for_ten(config):
    actual = prices.read(config, ["RVRS"], D(2024, 2, 1), D(2024, 2, 29))
    expected = flat("RVRS", [(D(2024, 2, 13), 10.0, 5000.0), (D(2024, 2, 14), 11.0, 4000.0), (D(2024, 2, 15), 11.5, 4000.0)])
    assert_prices(actual, expected)


def test_two_splits_in_one_month(config):
    actual = prices.read(config, ["TWO"], D(2024, 6, 1), D(2024, 6, 30))
    expected = flat("TWO", [(D(2024, 6, 3), 100.0, 60.0), (D(2024, 6, 4), 99.0, 60.0), (D(2024, 6, 5), 100.0, 60.0),
                            (D(2024, 6, 18), 102.0, 60.0), (D(2024, 6, 20), 103.0, 60.0)])  # fmt: skip
    assert_prices(actual, expected)
    # A window ending between the two ex-dates still applies the later split.
    assert prices.read(config, ["TWO"], D(2024, 6, 3), D(2024, 6, 4))["close"].tolist() == [100.0, 99.0]


def test_split_and_dividend_on_one_ex_date_the_dividend_per_new_share(config):
    # Previous close 100 as traded is 50 per new share: 1 - 0.50 / 50 = 0.99, times the split's 0.5.
    total_return = prices.read(config, ["SPDV"], D(2024, 3, 18), D(2024, 3, 21), adjust="total_return")
    expected = flat("SPDV", [(D(2024, 3, 18), 48.51, 2000.0), (D(2024, 3, 19), 49.5, 2000.0),
                             (D(2024, 3, 20), 49.75, 1000.0), (D(2024, 3, 21), 50.0, 1000.0)])  # fmt: skip
    assert_prices(total_return, expected)
    split_only = prices.read(config, ["SPDV"], D(2024, 3, 18), D(2024, 3, 21), adjust="split")
    assert split_only["close"].tolist() == [49.0, 50.0, 49.75, 50.0]


def test_yahoo_worked_example_of_split_and_dividend_multipliers(config):
    # Yahoo Finance help, "Adjusted close" (help.yahoo.com/l/us/yahoo/finance/quotes/quote-12.html, quoted at
    # analystforum.com/t/historical-prices-on-yahoo-finance/30115): "2/13/03 Close = 46.99, 2/14/03 Close = 48.30,
    # 2/18/03 Split = 2:1, 2/18/03 Close = 24.96, 2/19/03 Cash Dividend = 0.08 (ex-date), 2/19/03 Close = 24.53.
    # Split Multiplier = 0.5, Dividend Multiplier = 1 - (0.08/24.96) = 0.9968. 2/13/03 Adj. Close = 23.42,
    # 2/14/03 Adj. Close = 24.07, 2/18/03 Adj. Close = 24.88, 2/19/03 Adj. Close = 24.53". Yahoo rounds to cents.
    actual = prices.read(config, ["YHOO"], D(2003, 2, 1), D(2003, 2, 28), adjust="total_return")
    assert actual["date"].tolist() == [D(2003, 2, 13), D(2003, 2, 14), D(2003, 2, 18), D(2003, 2, 19)]
    assert actual["close"].round(2).tolist() == [23.42, 24.07, 24.88, 24.53]
    assert actual["close"].iloc[2] / 24.96 == pytest.approx(0.9968, abs=5e-5)
    assert actual["volume"].tolist() == [2000.0, 2000.0, 1000.0, 1000.0]  # volume follows the split alone


def test_corrected_split_replaces_the_first_through_the_upsert(spark, config):
    stored = catalog.read_table(spark, config, "corporate_actions").filter(F.col("source_id") == "S-CORR")
    expected = spark.createDataFrame(
        [("CORR", "split", D(2024, 3, 6), 1.0, 4.0, None, None, None, None, None, "S-CORR", FIRST_SEEN, CORRECTED_ON)],
        catalog.SCHEMAS["corporate_actions"],
    )
    assert_df_equality(stored, expected, ignore_nullable=True)
    assert prices.read(config, ["CORR"], D(2024, 3, 1), D(2024, 3, 31))["close"].tolist() == [25.0, 25.0]


def test_upsert_seen_again_keeps_first_seen_and_an_older_sighting_changes_no_values(spark, warehouse):
    config = RunConfig.from_params(ds="2024-03-08", warehouse=str(warehouse), namespace="prices_upsert")
    catalog.ensure_tables(spark, config)
    first = spark.createDataFrame([split("AAA", D(2024, 3, 6), 1.0, 2.0, "S1"), dividend("AAA", D(2024, 3, 7), 0.2, "D1")],
                                  ACTIONS_DDL)  # fmt: skip
    catalog.merge_corporate_actions(spark, config, first, D(2024, 3, 4))
    catalog.merge_corporate_actions(spark, config, first, D(2024, 3, 4))  # the same ds again: no change
    corrected = spark.createDataFrame([dividend("AAA", D(2024, 3, 8), 0.25, "D1")], ACTIONS_DDL)
    catalog.merge_corporate_actions(spark, config, corrected, D(2024, 3, 6))
    stale = spark.createDataFrame([dividend("AAA", D(2024, 3, 7), 0.2, "D1")], ACTIONS_DDL)
    catalog.merge_corporate_actions(spark, config, stale, D(2024, 3, 5))  # a re-run of an older ds

    expected = spark.createDataFrame(
        [
            ("AAA", "split", D(2024, 3, 6), 1.0, 2.0, None, None, None, None, None, "S1", D(2024, 3, 4), D(2024, 3, 4)),
            ("AAA", "dividend", D(2024, 3, 8), None, None, 0.25, "USD", None, None, None, "D1", D(2024, 3, 4), D(2024, 3, 6)),
        ],
        catalog.SCHEMAS["corporate_actions"],
    )
    assert_df_equality(catalog.read_table(spark, config, "corporate_actions"), expected, ignore_row_order=True,
                       ignore_nullable=True)  # fmt: skip
    twice = spark.createDataFrame([dividend("AAA", D(2024, 3, 8), 0.25, "D2"), dividend("AAA", D(2024, 3, 8), 0.3, "D2")],
                                  ACTIONS_DDL)  # fmt: skip
    with pytest.raises(ValueError, match="source_id D2 comes with different values"):
        catalog.merge_corporate_actions(spark, config, twice, D(2024, 3, 8))


def test_actions_that_cannot_be_right_are_left_out_and_said(config, caplog):
    with caplog.at_level(logging.WARNING, logger="lib.prices"):
        actual = prices.read(config, ["BAD"], D(2024, 3, 1), D(2024, 3, 31), adjust="total_return")
    # Only the 2-for-1 of the 12th applies, once: the zero ratio, the negative and the too-large dividends do not.
    expected = flat("BAD", [(D(2024, 3, day), 50.0, 2000.0) for day in (5, 6, 7, 8, 11)] + [(D(2024, 3, 12), 50.0, 1000.0)])
    assert_prices(actual, expected)
    assert actual.attrs["warnings"] == [
        "BAD split S-BAD-ZERO (ex 2024-03-06): ratio 0.0:2.0 cannot be right, left out",
        "BAD dividend D-BAD-NEG (ex 2024-03-07): cash_amount -1.0 cannot be right, left out",
        "BAD split (ex 2024-03-12): the same action under ids S-BAD-A, S-BAD-B, applied once",
        "BAD dividend D-BAD-BIG (ex 2024-03-08): cash_amount 150 >= previous close 100, left out",
    ]
    assert [r.getMessage() for r in caplog.records] == actual.attrs["warnings"]


def test_conflicting_splits_on_one_ex_date_apply_neither():
    actions = pd.DataFrame(
        [split("XXX", D(2024, 3, 6), 1.0, 2.0, "A"), split("XXX", D(2024, 3, 6), 1.0, 3.0, "B")],
        columns=list(prices.ACTION_COLUMNS[:-2]),
    ).assign(first_seen_ds=None, last_seen_ds=None)
    usable, warnings = prices.usable_actions(actions)
    assert usable.empty
    assert warnings == ["XXX split (ex 2024-03-06): ratios 1:2 (A), 1:3 (B) disagree, none applied"]


def test_no_corporate_actions_table_means_no_actions(spark, warehouse):
    config = RunConfig.from_params(ds="2024-03-14", warehouse=str(warehouse), namespace="prices_no_actions")
    catalog.ensure_tables(spark, config)
    bars = spark.createDataFrame([flat_bar("SPLT", D(2024, 3, 11), 100.0)], catalog.BAR_SCHEMA)
    catalog.overwrite_partitions(config, "monthly_stock_prices", monthly.apply_days(bars, None, [D(2024, 3, 11)]))
    spark.sql(f"DROP TABLE {config.table('corporate_actions')}")
    actual = prices.read(config, ["SPLT"], D(2024, 3, 11), D(2024, 3, 11), adjust="total_return")
    assert_prices(actual, flat("SPLT", [(D(2024, 3, 11), 100.0, 1000.0)]))


@pytest.mark.parametrize("adjust", ["split", "total_return"])
def test_spark_path_equals_the_pyiceberg_path(spark, config, adjust):
    symbols = sorted({row[0] for row in BARS})
    daily = catalog.read_table(spark, config, "stock_prices")
    actions = catalog.read_table(spark, config, "corporate_actions")
    for start, end in ((D(2024, 2, 1), D(2024, 6, 28)), (D(2003, 2, 14), D(2003, 2, 18)), (D(2024, 3, 12), D(2024, 3, 19))):
        via_spark = (
            prices.adjust_frame(daily, actions, adjust)
            .filter(F.col("date").between(start, end))
            .select(*prices.COLUMNS)
            .orderBy("symbol", "date")
            .toPandas()
        )
        via_pyiceberg = prices.read(config, symbols, start, end, adjust=adjust).loc[:, list(prices.COLUMNS)]
        assert len(via_pyiceberg) > 0
        pd.testing.assert_frame_equal(via_pyiceberg, via_spark, check_dtype=False, atol=1e-12, rtol=0)


def test_cli_prints_csv(config, capsys):
    code = prices_command.main(["SPLT", "--start", "2024-03-11", "--end", "2024-03-12", "-p", "warehouse", config.warehouse,
                        "-p", "namespace", "prices"])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "symbol,date,open,high,low,close,volume,vwap",
        "SPLT,2024-03-11,50.0,50.0,50.0,50.0,2000.0,50.0",
        "SPLT,2024-03-12,50.5,51.5,49.5,51.0,2400.0,50.75",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["SPLT", "--start", "2024/03/11", "--end", "2024-03-12"], "--start must be YYYY-MM-DD, got '2024/03/11'"),
        (
            ["SPLT", "--start", "2024-03-11", "--end", "2024-3-12"],
            "--end must be YYYY-MM-DD, got '2024-3-12'. Example: --end 2024-03-28.",
        ),
        (["SPLT", "--start", "2024-03-12", "--end", "2024-03-11"], "--start (2024-03-12) is after --end (2024-03-11)"),
        (["SPLT", "--start", "2024-03-11", "--end", "2024-03-12", "--adjust", "dividend"], "invalid choice: 'dividend'"),
        (["--start", "2024-03-11", "--end", "2024-03-12"], "the following arguments are required: SYMBOL"),
        (["SPLT", "--start", "2024-03-11", "--end", "2024-03-12", "-p", "no_such", "1"], "unknown parameter(s) ['no_such']"),
    ],
)
def test_cli_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        prices_command.main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_warehouse_without_a_catalog_exits_2(tmp_path, capsys):
    code = prices_command.main(["SPLT", "--start", "2024-03-11", "--end", "2024-03-12", "-p", "warehouse", str(tmp_path)])
    assert code == 2
    assert f"no Iceberg catalog at {tmp_path / 'catalog.db'}" in capsys.readouterr().err
    assert not (tmp_path / "catalog.db").exists()


def test_cli_names_the_symbols_without_bars(config, capsys, caplog):
    code = prices_command.main(["SPLT", "NOPE", "frst", "--start", "2024-03-11", "--end", "2024-03-12", "-p", "warehouse",
                        config.warehouse, "-p", "namespace", "prices"])  # fmt: skip
    assert code == 0  # SPLT has bars
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()] == ["symbol", "SPLT", "SPLT"]
    said = [r.getMessage() for r in caplog.records if r.name == "lib.prices"]
    assert said == [
        "FRST: no bar from 2024-03-11 to 2024-03-12 (its prices lie outside that span): widen the span",
        f"NOPE: no prices on any day in prices.monthly_stock_prices of the warehouse {config.warehouse}: check the ticker",
    ]


def test_cli_exits_1_when_no_symbol_is_known(config):
    """As a user runs it: its own process, so the warnings reach stderr through the command's logging set-up."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "lib.prices", "NOPE", "nada", "--start", "2024-03-11", "--end", "2024-03-12",
         "-p", "warehouse", config.warehouse, "-p", "namespace", "prices"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stdout == ""
    assert "lib.prices: NADA: no prices on any day in prices.monthly_stock_prices" in run.stderr
    assert "lib.prices: NOPE: no prices on any day" in run.stderr
    assert "python -m lib.prices: error: the warehouse has no prices of NADA, NOPE: check the tickers" in run.stderr


def test_cli_known_symbol_outside_its_span_is_an_empty_csv(config, capsys, caplog):
    code = prices_command.main(["FRST", "--start", "2024-03-11", "--end", "2024-03-12", "-p", "warehouse", config.warehouse,
                        "-p", "namespace", "prices"])  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.splitlines() == ["symbol,date,open,high,low,close,volume,vwap"]
    assert "FRST: no bar from 2024-03-11 to 2024-03-12" in caplog.text


def test_read_warns_of_the_symbols_without_bars(config):
    frame = prices.read(config, ["SPLT", "NOPE", "FRST"], D(2024, 3, 11), D(2024, 3, 12), adjust="raw")
    assert set(frame["symbol"]) == {"SPLT"}
    assert frame.attrs["unknown_symbols"] == ["NOPE"]
    assert frame.attrs["warnings"] == [
        "FRST: no bar from 2024-03-11 to 2024-03-12 (its prices lie outside that span): widen the span",
        f"NOPE: no prices on any day in prices.monthly_stock_prices of the warehouse {config.warehouse}: check the ticker",
    ]
    complete = prices.read(config, ["SPLT"], D(2024, 3, 11), D(2024, 3, 12), adjust="raw")
    assert complete.attrs["warnings"] == [] and complete.attrs["unknown_symbols"] == []
