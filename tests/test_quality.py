"""Tests of lib.quality (checks, gate) and lib.settings.thresholds: each check on tiny crafted tables with known
defects, and on clean ones."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import types as T

from lib.core.errors import ConfigError, QualityGateError
from lib.core.trading_days import today_new_york
from lib.quality.checks import CheckResult, QualityInputs, release, run_checks
from lib.quality.gate import QUALITY_RESULTS_SCHEMA, enforce_gate, failed_errors, results_frame
from lib.settings.thresholds import DEFAULT_THRESHOLDS, resolve_thresholds

D = dt.date
DS = D(2024, 3, 28)  # Thursday; Good Friday 2024-03-29 is an NYSE holiday
SPAN = [D(2024, 3, 26), D(2024, 3, 27), D(2024, 3, 28)]

PRICE_FIELDS = [
    T.StructField("symbol", T.StringType()),
    T.StructField("date", T.DateType()),
    T.StructField("open", T.DoubleType()),
    T.StructField("high", T.DoubleType()),
    T.StructField("low", T.DoubleType()),
    T.StructField("close", T.DoubleType()),
    T.StructField("volume", T.DoubleType()),
    T.StructField("vwap", T.DoubleType()),
    T.StructField("transactions", T.LongType()),
]
PRICES_SCHEMA = T.StructType(PRICE_FIELDS)
RAW_SCHEMA = T.StructType(
    PRICE_FIELDS
    + [
        T.StructField("ds", T.DateType()),
        T.StructField("endpoint", T.StringType()),
        T.StructField("received_at", T.TimestampType()),
    ]
)
MONTHLY_SCHEMA = T.StructType(
    [
        T.StructField("symbol", T.StringType()),
        T.StructField("metric_name", T.StringType()),
        T.StructField("metric_array", T.ArrayType(T.DoubleType())),
        T.StructField("month_start", T.DateType()),
        T.StructField("from_date", T.DateType()),
    ]
)
TICKERS_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType()) for name in ("ticker", "name", "market", "locale", "primary_exchange", "type")]
    + [T.StructField("active", T.BooleanType())]
    + [
        T.StructField(name, T.StringType())
        for name in ("currency_name", "cik", "composite_figi", "share_class_figi", "last_updated_utc")
    ]
    + [T.StructField("ds", T.DateType())]
)
FAILURES_SCHEMA = T.StructType(
    [
        T.StructField("ds", T.DateType()),
        T.StructField("symbol", T.StringType()),
        T.StructField("endpoint", T.StringType()),
        T.StructField("http_status", T.IntegerType()),
        T.StructField("error", T.StringType()),
        T.StructField("attempts", T.IntegerType()),
        T.StructField("failed_at", T.TimestampType()),
    ]
)
RECEIVED = dt.datetime(2024, 3, 28, 22, 0)
TODAY = today_new_york()


def bar(symbol, date, open_=10.0, high=11.0, low=9.0, close=10.5, volume=1000.0, vwap=10.2, transactions=50):
    return (symbol, date, open_, high, low, close, volume, vwap, transactions)


def prices(spark, rows):
    return spark.createDataFrame(rows, PRICES_SCHEMA)


def raw(spark, rows):
    return spark.createDataFrame([r + (DS, "grouped", RECEIVED) for r in rows], RAW_SCHEMA)


def ticker(symbol, active=True, ds=DS):
    return (symbol, f"{symbol} Inc.", "stocks", "us", "XNAS", "CS", active, "usd", None, None, None, None, ds)


def by_table(results):
    return {r.table_name: r for r in results}


def keys(result, *columns):
    return sorted(tuple(row[c] for c in columns) for row in result.failures.collect())


CLEAN_BARS = [bar("AAPL", d) for d in SPAN] + [bar("MSFT", d, 20.0, 21.0, 19.0, 20.5, 500.0, 20.1, 30) for d in SPAN]


# ---------------------------------------------------------------------------- duplicates


def test_duplicates_in_every_keyed_table(spark):
    raw_rows = [
        bar("AAPL", DS),
        bar("AAPL", DS),  # same bar received twice, copies agree: still a defect
        bar("MSFT", DS, close=10.7),
        bar("MSFT", DS, close=10.8),
        bar("MSFT", DS, close=10.9),  # received three times, copies differ
        bar("GOOG", DS),
    ]
    price_rows = [bar("AAPL", DS), bar("AAPL", DS, close=11.0), bar("MSFT", DS)]
    monthly_rows = [
        ("AAPL", "close", [1.0], D(2024, 3, 1), D(2024, 3, 1)),
        ("AAPL", "close", [2.0], D(2024, 3, 1), D(2024, 3, 1)),
        ("AAPL", "open", [1.0], D(2024, 3, 1), D(2024, 3, 1)),
    ]
    ticker_rows = [ticker("AAPL"), ticker("MSFT"), ticker("MSFT", active=False), ticker("MSFT", ds=D(2024, 3, 27))]
    inputs = QualityInputs(
        raw_daily_bars=raw(spark, raw_rows),
        stock_prices=prices(spark, price_rows),
        monthly_stock_prices=spark.createDataFrame(monthly_rows, MONTHLY_SCHEMA),
        stock_tickers=spark.createDataFrame(ticker_rows, TICKERS_SCHEMA),
    )

    results = by_table(run_checks(inputs, DS, SPAN, only=["duplicates"]))

    assert set(results) == {"raw_daily_bars", "stock_prices", "monthly_stock_prices", "stock_tickers"}
    assert {t: r.failed_rows for t, r in results.items()} == {
        "raw_daily_bars": 2,
        "stock_prices": 1,
        "monthly_stock_prices": 1,
        "stock_tickers": 1,
    }
    assert all(r.severity == "error" and r.status == "fail" for r in results.values())
    expected = spark.createDataFrame(
        [("AAPL", DS, 2, "x2"), ("MSFT", DS, 3, "x3")],
        "symbol string, date date, copies bigint, problem string",
    )
    assert_df_equality(results["raw_daily_bars"].failures, expected, ignore_row_order=True, ignore_nullable=True)
    assert results["raw_daily_bars"].details == ("2 duplicate (symbol, date): AAPL 2024-03-28 (x2), MSFT 2024-03-28 (x3)")
    assert keys(results["monthly_stock_prices"], "symbol", "metric_name") == [("AAPL", "close")]
    assert keys(results["stock_tickers"], "ticker", "ds") == [("MSFT", DS)]
    release(list(results.values()))


def test_duplicates_clean(spark):
    inputs = QualityInputs(raw_daily_bars=raw(spark, CLEAN_BARS), stock_prices=prices(spark, CLEAN_BARS))
    results = run_checks(inputs, DS, SPAN, only=["duplicates"])
    assert [(r.table_name, r.status, r.failed_rows) for r in results] == [
        ("raw_daily_bars", "pass", 0),
        ("stock_prices", "pass", 0),
    ]
    assert results[0].details == "0 duplicate (symbol, date)"


# ---------------------------------------------------------------------------- null_values


def test_null_values_in_raw_and_prices(spark):
    raw_rows = [bar("AAPL", DS, close=None), bar("MSFT", DS, open_=None, volume=None), bar("GOOG", DS)]
    # vwap and transactions may be null (the open-close endpoint serves neither)
    price_rows = [bar("AAPL", DS, low=None), bar("MSFT", DS, vwap=None, transactions=None)]
    inputs = QualityInputs(raw_daily_bars=raw(spark, raw_rows), stock_prices=prices(spark, price_rows))

    results = by_table(run_checks(inputs, DS, SPAN, only=["null_values"]))

    assert results["raw_daily_bars"].failed_rows == 2
    assert keys(results["raw_daily_bars"], "symbol", "problem") == [
        ("AAPL", "null close"),
        ("MSFT", "null open, null volume"),
    ]
    assert results["stock_prices"].failed_rows == 1
    assert keys(results["stock_prices"], "symbol", "date", "problem") == [("AAPL", DS, "null low")]
    # the failing rows are the table's own rows, with the problem named
    assert results["stock_prices"].failures.columns == PRICES_SCHEMA.names + ["problem"]


def test_null_values_clean(spark):
    inputs = QualityInputs(stock_prices=prices(spark, CLEAN_BARS + [bar("GOOG", DS, vwap=None, transactions=None)]))
    (result,) = run_checks(inputs, DS, SPAN, only=["null_values"])
    assert (result.table_name, result.status, result.failed_rows) == ("stock_prices", "pass", 0)


# ---------------------------------------------------------------------------- ohlc_consistency


def test_ohlc_consistency(spark):
    rows = [
        bar("HILO", DS, open_=10.0, high=9.0, low=11.0, close=10.0, vwap=10.0),  # high < low, swapped
        bar("LOWO", DS, open_=10.0, high=11.0, low=10.2, close=10.5, vwap=10.5),  # low above open
        bar("HIGC", DS, open_=10.0, high=10.4, low=9.0, close=10.5, vwap=10.0),  # high below close
        bar("VWAP", DS, high=11.0, low=9.0, vwap=11.2),  # 1.8% above high
        bar("NEGP", DS, open_=-1.0, high=11.0, low=-2.0, close=10.0, vwap=None),  # price <= 0
        bar("TOLV", DS, high=11.0, low=9.0, vwap=11.05),  # 0.45% above high: within tolerance
        bar("NULC", DS, close=None),  # nulls are null_values' job
        bar("GOOD", DS),
    ]
    inputs = QualityInputs(stock_prices=prices(spark, rows), raw_daily_bars=raw(spark, rows[:1]))

    results = by_table(run_checks(inputs, DS, SPAN, only=["ohlc_consistency"]))

    assert results["stock_prices"].failed_rows == 5
    assert keys(results["stock_prices"], "symbol", "problem") == [
        ("HIGC", "high < max(open, close)"),
        ("HILO", "high < low, low > min(open, close), high < max(open, close), vwap outside [low, high]"),
        ("LOWO", "low > min(open, close)"),
        ("NEGP", "price <= 0"),
        ("VWAP", "vwap outside [low, high]"),
    ]
    assert results["raw_daily_bars"].failed_rows == 1


def test_ohlc_vwap_tolerance_from_thresholds(spark):
    rows = [bar("TOLV", DS, high=11.0, low=9.0, vwap=11.05)]
    (strict,) = run_checks(
        QualityInputs(stock_prices=prices(spark, rows)), DS, SPAN, {"vwap_tolerance": 0.0}, only=["ohlc_consistency"]
    )
    assert keys(strict, "symbol") == [("TOLV",)]


def test_ohlc_consistency_clean(spark):
    (result,) = run_checks(QualityInputs(stock_prices=prices(spark, CLEAN_BARS)), DS, SPAN, only=["ohlc_consistency"])
    assert result.status == "pass"


# ---------------------------------------------------------------------------- volume_non_negative


def test_volume_non_negative(spark):
    rows = [
        bar("NEGV", DS, volume=-5.0),
        bar("NEGT", DS, transactions=-1),
        bar("BOTH", DS, volume=-1.0, transactions=-1),
        bar("ZERO", DS, volume=0.0, transactions=0),
        bar("NULT", DS, transactions=None),
    ]
    inputs = QualityInputs(raw_daily_bars=raw(spark, rows), stock_prices=prices(spark, rows[3:]))

    results = by_table(run_checks(inputs, DS, SPAN, only=["volume_non_negative"]))

    assert keys(results["raw_daily_bars"], "symbol", "problem") == [
        ("BOTH", "volume < 0, transactions < 0"),
        ("NEGT", "transactions < 0"),
        ("NEGV", "volume < 0"),
    ]
    assert (results["stock_prices"].status, results["stock_prices"].failed_rows) == ("pass", 0)


# ---------------------------------------------------------------------------- completeness_tickers


def completeness_inputs(spark, failure_symbols):
    tickers = [ticker("AAPL"), ticker("MSFT"), ticker("GOOG"), ticker("AMZN"), ticker("GONE", active=False)]
    tickers.append(ticker("OLD", ds=D(2024, 3, 27)))  # yesterday's universe does not count
    failures = [(DS, s, "open-close", 500, "server error", 5, RECEIVED) for s in failure_symbols]
    failures.append((D(2024, 3, 27), "AMZN", "open-close", 500, "old", 5, RECEIVED))  # another run's failure
    return QualityInputs(
        stock_prices=prices(spark, [bar("AAPL", DS), bar("AMZN", D(2024, 3, 27))]),
        stock_tickers=spark.createDataFrame(tickers, TICKERS_SCHEMA),
        ingest_failures=spark.createDataFrame(failures, FAILURES_SCHEMA),
    )


def test_completeness_tickers_missing_without_failure(spark):
    inputs = completeness_inputs(spark, failure_symbols=["GOOG"])

    (result,) = run_checks(inputs, DS, SPAN, only=["completeness_tickers"])

    assert (result.table_name, result.severity, result.status) == ("stock_prices", "warn", "fail")
    assert keys(result, "symbol", "date") == [("AMZN", DS), ("MSFT", DS)]
    assert result.details == (
        "2 active tickers without a bar or ingest failure on 2024-03-28: "
        "AMZN (no bar, no ingest failure), MSFT (no bar, no ingest failure)"
    )


def test_completeness_tickers_severity_override_and_market_wide_failure(spark):
    inputs = completeness_inputs(spark, failure_symbols=["GOOG"])
    (strict,) = run_checks(inputs, DS, SPAN, {"severity": {"completeness_tickers": "error"}}, only=["completeness_tickers"])
    assert strict.severity == "error" and strict.failed_rows == 2

    # a failed whole-market request (symbol null, e.g. grouped daily) explains every missing ticker
    (explained,) = run_checks(completeness_inputs(spark, failure_symbols=[None]), DS, SPAN, only=["completeness_tickers"])
    assert explained.status == "pass"


def test_completeness_tickers_clean(spark):
    inputs = completeness_inputs(spark, failure_symbols=["MSFT", "GOOG", "AMZN"])
    (result,) = run_checks(inputs, DS, SPAN, only=["completeness_tickers"])
    assert (result.status, result.failed_rows) == ("pass", 0)


# ---------------------------------------------------------------------------- completeness_days


def test_completeness_days(spark):
    span = [D(2024, 3, 25) + dt.timedelta(days=i) for i in range(7)]  # Mon 25 .. Sun 31, Fri 29 is a holiday
    rows = [bar("AAPL", D(2024, 3, 25)), bar("AAPL", D(2024, 3, 26)), bar("AAPL", D(2024, 3, 28))]
    rows.append(bar("AAPL", D(2024, 3, 30)))  # a Saturday bar
    inputs = QualityInputs(stock_prices=prices(spark, rows), raw_daily_bars=raw(spark, rows[:3]))

    results = by_table(run_checks(inputs, D(2024, 3, 31), span, only=["completeness_days"]))

    assert results["stock_prices"].severity == "error"
    assert keys(results["stock_prices"], "date", "problem") == [
        (D(2024, 3, 27), "no bar"),
        (D(2024, 3, 30), "bar on a non-trading day"),
    ]
    assert keys(results["raw_daily_bars"], "date", "problem") == [(D(2024, 3, 27), "no bar")]


def test_completeness_days_clean(spark):
    (result,) = run_checks(QualityInputs(stock_prices=prices(spark, CLEAN_BARS)), DS, SPAN, only=["completeness_days"])
    assert (result.status, result.failed_rows) == ("pass", 0)


# ---------------------------------------------------------------------------- array_integrity


def march(values_by_day: dict[int, float], length: int) -> list:
    """A March 2024 metric_array of `length` slots, null except on the given days of month."""
    return [values_by_day.get(day) for day in range(1, length + 1)]


def test_array_integrity(spark):
    # Only the close metric is populated in the bars, so only close rows are needed in the arrays.
    def close_bar(symbol, day, close):
        return (symbol, D(2024, 3, day), None, None, None, close, None, None, None)

    bars = [
        close_bar("AAPL", 26, 1.0),
        close_bar("AAPL", 27, 2.0),
        close_bar("AAPL", 28, 3.0),
        close_bar("MSFT", 26, 5.0),
        close_bar("MSFT", 27, 6.0),
        close_bar("MSFT", 28, 7.5),  # array holds 7.0: value mismatch
        close_bar("GOOG", 27, 8.0),  # slot 27 is null: bar missing from array
        close_bar("AMZN", 28, 9.0),  # no monthly row at all: bar missing (no slot)
    ]
    monthly = [
        ("AAPL", "close", march({26: 1.0, 27: 2.0, 28: 3.0}, 28), D(2024, 3, 1), D(2024, 3, 28)),
        ("MSFT", "close", march({26: 5.0, 27: 6.0, 28: 7.0}, 28), D(2024, 3, 1), D(2024, 3, 28)),
        ("GOOG", "close", march({26: 4.0}, 28), D(2024, 3, 1), D(2024, 3, 28)),  # 26 has no bar
        ("NVDA", "close", [None] * 27, D(2024, 3, 1), D(2024, 3, 28)),  # length 27 != 28
        ("META", "close", [None] * 27, D(2024, 3, 1), D(2024, 3, 27)),  # from_date lags the month's
        ("TSLA", "close", [None] * 2, D(2024, 2, 1), D(2024, 2, 2)),  # clean February row
    ]
    inputs = QualityInputs(monthly_stock_prices=spark.createDataFrame(monthly, MONTHLY_SCHEMA), stock_prices=prices(spark, bars))

    (result,) = run_checks(inputs, DS, SPAN, only=["array_integrity"])

    assert (result.table_name, result.severity, result.failed_rows) == ("monthly_stock_prices", "error", 6)
    expected = spark.createDataFrame(
        [
            ("AMZN", D(2024, 3, 1), "close", D(2024, 3, 28), "bar missing from array (no slot)"),
            ("GOOG", D(2024, 3, 1), "close", D(2024, 3, 26), "non-null slot 4.0 with no bar"),
            ("GOOG", D(2024, 3, 1), "close", D(2024, 3, 27), "bar missing from array (null slot)"),
            ("META", D(2024, 3, 1), "close", D(2024, 3, 27), "from_date 2024-03-27 != month's 2024-03-28"),
            ("MSFT", D(2024, 3, 1), "close", D(2024, 3, 28), "value mismatch: array 7.0, bar 7.5"),
            ("NVDA", D(2024, 3, 1), "close", D(2024, 3, 28), "length 27 != day of from_date 28"),
        ],
        "symbol string, month_start date, metric_name string, date date, problem string",
    )
    assert_df_equality(result.failures, expected, ignore_row_order=True, ignore_nullable=True)


def test_array_integrity_clean(spark):
    bars = [bar("AAPL", D(2024, 3, 27)), bar("AAPL", D(2024, 3, 28))]
    values = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1000.0, "vwap": 10.2, "transactions": 50.0}
    monthly = [
        ("AAPL", metric, march({27: value, 28: value}, 28), D(2024, 3, 1), D(2024, 3, 28)) for metric, value in values.items()
    ]
    inputs = QualityInputs(monthly_stock_prices=spark.createDataFrame(monthly, MONTHLY_SCHEMA), stock_prices=prices(spark, bars))
    (result,) = run_checks(inputs, DS, [D(2024, 3, 27), DS], only=["array_integrity"])
    assert (result.status, result.failed_rows) == ("pass", 0), result.details


def test_array_integrity_late_data_passes_and_a_wrong_from_date_is_caught(spark, monkeypatch):
    # The check's today is New York's: pinned, so a run across midnight in New York expects the day it judged by.
    monkeypatch.setattr("lib.quality.checks.today_new_york", lambda: TODAY)
    # A run for Thursday 21st after Friday 22nd was applied: from_date stays Friday, after this run's ds.
    thursday, friday = D(2024, 3, 21), D(2024, 3, 22)
    context = prices(spark, [bar("AAPL", thursday), bar("AAPL", friday), bar("MSFT", thursday)])
    values = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1000.0, "vwap": 10.2, "transactions": 50.0}
    late = [("AAPL", m, march({21: v, 22: v}, 22), D(2024, 3, 1), friday) for m, v in values.items()]
    late += [("MSFT", m, march({21: v}, 22), D(2024, 3, 1), friday) for m, v in values.items()]
    span_prices = context.filter("date = DATE'2024-03-21'")

    late_inputs = QualityInputs(
        monthly_stock_prices=spark.createDataFrame(late, MONTHLY_SCHEMA), stock_prices=span_prices, price_context=context
    )
    (result,) = run_checks(late_inputs, thursday, [thursday], only=["array_integrity"])
    assert (result.status, result.failed_rows) == ("pass", 0), result.details

    # Really wrong: a from_date past every bar the month has, and one in the future.
    next_year = TODAY.year + 1
    wrong = [
        ("AAPL", "close", march({21: 10.5, 22: 10.5}, 25), D(2024, 3, 1), D(2024, 3, 25)),  # Monday, no bar yet
        ("AAPL", "close", [None, None], D(next_year, 3, 1), D(next_year, 3, 2)),
    ]
    wrong_inputs = QualityInputs(monthly_stock_prices=spark.createDataFrame(wrong, MONTHLY_SCHEMA), price_context=context)
    (result,) = run_checks(wrong_inputs, thursday, [thursday], only=["array_integrity"])
    expected = spark.createDataFrame(
        [
            ("AAPL", D(2024, 3, 1), "close", D(2024, 3, 25),
             "from_date after ds 2024-03-21 and after the month's latest bar 2024-03-22"),
            ("AAPL", D(next_year, 3, 1), "close", D(next_year, 3, 2), f"from_date in the future (today is {TODAY})"),
        ],
        "symbol string, month_start date, metric_name string, date date, problem string",
    )  # fmt: skip
    assert_df_equality(result.failures, expected, ignore_row_order=True, ignore_nullable=True)


def test_array_integrity_from_date_after_ds_needs_the_context(spark):
    """Without prices beyond the span, a from_date after ds has nothing to vouch for it: still reported."""
    monthly = [("AAPL", "close", march({}, 22), D(2024, 3, 1), D(2024, 3, 22))]
    inputs = QualityInputs(monthly_stock_prices=spark.createDataFrame(monthly, MONTHLY_SCHEMA))
    (result,) = run_checks(inputs, D(2024, 3, 21), [D(2024, 3, 21)], only=["array_integrity"])
    assert keys(result, "date", "problem") == [
        (D(2024, 3, 22), "from_date after ds 2024-03-21 and after the month's latest bar (none)")
    ]


# ---------------------------------------------------------------------------- outliers


MARCH_SESSIONS = [D(2024, 3, d) for d in (1, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 18)]


JUMP_CLOSES = [100.0, 100.5, 99.7, 100.9, 100.6, 101.5, 100.4, 100.8, 151.2, 150.3, 151.4, 151.1]  # +50% on the 13th
CALM_CLOSES = [100.0, 100.5, 99.7, 100.9, 100.6, 101.5, 100.4, 100.8, 101.2, 100.3, 101.4, 101.1]
CALM_VOLUMES = [1000.0, 1100.0, 1000.0, 1100.0, 1050.0, 1100.0, 1000.0, 1100.0, 1000.0, 1100.0, 1000.0, 1100.0]


def series_bars(symbol, closes, volumes):
    return [bar(symbol, day, c, c, c, c, v, c, 10) for day, c, v in zip(MARCH_SESSIONS, closes, volumes, strict=True)]


def test_outliers(spark):
    spike_volumes = [100000.0 if day == D(2024, 3, 7) else v for day, v in zip(MARCH_SESSIONS, CALM_VOLUMES, strict=True)]
    rows = series_bars("JUMP", JUMP_CLOSES, spike_volumes)
    # too few days to score, even with a wild move
    rows += [bar("TINY", D(2024, 3, 1), close=10.0), bar("TINY", D(2024, 3, 4), close=100.0)]
    inputs = QualityInputs(stock_prices=prices(spark, rows))

    (result,) = run_checks(inputs, D(2024, 3, 18), MARCH_SESSIONS, only=["outliers"])

    assert (result.severity, result.status) == ("warn", "fail")
    assert keys(result, "symbol", "date", "measure") == [
        ("JUMP", D(2024, 3, 7), "volume"),
        ("JUMP", D(2024, 3, 13), "close_change"),
    ]
    assert result.details.startswith("2 outlying moves or volumes (|robust z| > 8): JUMP 2024-03-07 (volume 100000, z=")
    assert "JUMP 2024-03-13 (close change +50.0%, z=48.1)" in result.details


def test_outliers_clean(spark):
    rows = series_bars("CALM", CALM_CLOSES, CALM_VOLUMES)
    (result,) = run_checks(QualityInputs(stock_prices=prices(spark, rows)), D(2024, 3, 18), MARCH_SESSIONS, only=["outliers"])
    assert (result.status, result.failed_rows) == ("pass", 0), result.details


# ---------------------------------------------------------------------------- corporate actions, price jumps

ACTIONS_SCHEMA = T.StructType(
    [
        T.StructField("symbol", T.StringType()),
        T.StructField("action_type", T.StringType()),
        T.StructField("ex_date", T.DateType()),
        T.StructField("split_from", T.DoubleType()),
        T.StructField("split_to", T.DoubleType()),
        T.StructField("cash_amount", T.DoubleType()),
        T.StructField("currency", T.StringType()),
        T.StructField("declaration_date", T.DateType()),
        T.StructField("record_date", T.DateType()),
        T.StructField("pay_date", T.DateType()),
        T.StructField("source_id", T.StringType()),
        T.StructField("first_seen_ds", T.DateType()),
        T.StructField("last_seen_ds", T.DateType()),
    ]
)
ACTION_FAILURES_DDL = "symbol string, action_type string, ex_date date, source_id string, value double, problem string"
JUMP_FAILURES_DDL = "symbol string, previous_date date, date date, observed_ratio double, split_ratio double, problem string"


def split_action(symbol, ex_date, split_from, split_to, source_id):
    return (symbol, "split", ex_date, split_from, split_to, None, None, None, None, None, source_id, DS, DS)


def dividend_action(symbol, ex_date, cash_amount, source_id):
    return (symbol, "dividend", ex_date, None, None, cash_amount, "USD", None, None, None, source_id, DS, DS)


def actions(spark, rows):
    return spark.createDataFrame(rows, ACTIONS_SCHEMA)


def test_corporate_actions(spark):
    ex = D(2024, 3, 27)
    rows = [
        split_action("AAPL", ex, 1.0, 2.0, "S-B"),
        split_action("AAPL", ex, 1.0, 2.0, "S-A"),  # the same split under a second id
        split_action("MSFT", ex, 0.0, 2.0, "S-MSFT"),
        split_action("AMZN", ex, 1.0, None, "S-AMZN"),
        dividend_action("GOOG", ex, -0.5, "D-GOOG"),
        dividend_action("NVDA", ex, 20.0, "D-NVDA"),  # previous close 10.5
        split_action("TSLA", ex, 1.0, 2.0, "S-TSLA"),
        dividend_action("TSLA", ex, 6.0, "D-TSLA"),  # below 10.5, but per new share the close is 5.25
        dividend_action("META", ex, 0.2, "D-META"),  # fine
        dividend_action("ORCL", D(2024, 1, 10), 30.0, "D-ORCL"),  # before the span: no previous close to judge by
    ]
    context = prices(spark, [bar(symbol, D(2024, 3, 26)) for symbol in ("NVDA", "TSLA", "META", "ORCL")])
    inputs = QualityInputs(stock_prices=context, corporate_actions=actions(spark, rows))

    (result,) = run_checks(inputs, DS, SPAN, only=["corporate_actions"])

    assert (result.table_name, result.severity, result.status, result.failed_rows) == ("corporate_actions", "error", "fail", 6)
    expected = spark.createDataFrame(
        [
            ("AAPL", "split", ex, "S-A, S-B", 2.0, "the same split under 2 ids"),
            ("AMZN", "split", ex, "S-AMZN", None, "split ratio 1.0:null cannot be right"),
            ("GOOG", "dividend", ex, "D-GOOG", -0.5, "cash_amount -0.5 <= 0"),
            ("MSFT", "split", ex, "S-MSFT", 0.0, "split ratio 0.0:2.0 cannot be right"),
            ("NVDA", "dividend", ex, "D-NVDA", 1.9047619048,
             "cash_amount 20.0 >= previous close 10.5 per new share (2024-03-26)"),
            ("TSLA", "dividend", ex, "D-TSLA", 1.1428571429,
             "cash_amount 6.0 >= previous close 5.25 per new share (2024-03-26)"),
        ],
        ACTION_FAILURES_DDL,
    )  # fmt: skip
    assert_approx_df_equality(result.failures, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)
    assert result.details.startswith("6 impossible corporate actions: AAPL 2024-03-27 S-A, S-B (the same split under 2 ids)")


def test_corporate_actions_clean_and_empty(spark):
    rows = [split_action("AAPL", D(2024, 3, 27), 1.0, 4.0, "S1"), dividend_action("AAPL", D(2024, 3, 27), 0.5, "D1"),
            split_action("MSFT", D(2024, 3, 27), 10.0, 1.0, "S2")]  # fmt: skip
    context = prices(spark, [bar("AAPL", D(2024, 3, 26), close=10.0)])  # 0.5 against 10 / 4 = 2.5 per new share
    for table in (actions(spark, rows), actions(spark, [])):
        (result,) = run_checks(QualityInputs(stock_prices=context, corporate_actions=table), DS, SPAN,
                               only=["corporate_actions"])  # fmt: skip
        assert (result.status, result.failed_rows) == ("pass", 0), result.details


def flat_bars(symbol, closes, days=MARCH_SESSIONS):
    return [bar(symbol, day, c, c, c, c, 1000.0, c, 10) for day, c in zip(days, closes, strict=False)]


def test_price_jumps(spark):
    # Span: the 5th and 6th; the bars of the 1st and 4th are context, so the move into the 5th is judged.
    span = [D(2024, 3, 5), D(2024, 3, 6)]
    rows = (
        flat_bars("JUMP", [100.0, 101.0, 202.0, 203.0])  # doubles on the 5th, no split recorded
        + flat_bars("SPLT", [100.0, 101.0, 50.5, 51.0])  # 2-for-1 ex the 5th: explained
        + flat_bars("RVRS", [1.0, 1.1, 11.0, 11.2])  # 1-for-10 ex the 5th: explained
        + flat_bars("WRNG", [100.0, 101.0, 102.0, 51.0])  # split recorded ex the 5th, the prices halve on the 6th
        + flat_bars("OLD", [100.0, 300.0, 301.0, 302.0])  # jumped on the 4th, before the span
        + flat_bars("CALM", [100.0, 101.0, 100.0, 99.0])
    )
    splits = [
        split_action("SPLT", D(2024, 3, 5), 1.0, 2.0, "S1"),
        split_action("RVRS", D(2024, 3, 5), 10.0, 1.0, "S2"),
        split_action("WRNG", D(2024, 3, 5), 1.0, 2.0, "S3"),
    ]
    all_bars = prices(spark, rows)
    inputs = QualityInputs(
        stock_prices=all_bars.filter("date >= DATE'2024-03-05'"), price_context=all_bars, corporate_actions=actions(spark, splits)
    )

    (result,) = run_checks(inputs, span[-1], span, only=["price_jumps"])

    assert (result.table_name, result.severity, result.status, result.failed_rows) == ("stock_prices", "warn", "fail", 3)
    expected = spark.createDataFrame(
        [
            ("JUMP", D(2024, 3, 4), D(2024, 3, 5), 2.0, 1.0, "close x2.000 from 2024-03-04 to 2024-03-05, no split explains it"),
            ("WRNG", D(2024, 3, 4), D(2024, 3, 5), 1.00990099, 0.5,
             "close x1.010 from 2024-03-04 to 2024-03-05, split (ex 2024-03-05) expects x0.500: not in the prices"),
            ("WRNG", D(2024, 3, 5), D(2024, 3, 6), 0.5, 1.0, "close x0.500 from 2024-03-05 to 2024-03-06, no split explains it"),
        ],
        JUMP_FAILURES_DDL,
    )  # fmt: skip
    assert_approx_df_equality(result.failures, expected, 1e-8, ignore_row_order=True, ignore_nullable=True)

    # A looser limit lets the doubling pass; the split the prices do not show is still reported.
    (looser,) = run_checks(inputs, span[-1], span, thresholds={"jump_ratio": 2.5}, only=["price_jumps"])
    assert keys(looser, "symbol", "date") == [("WRNG", D(2024, 3, 5))]


def test_price_jumps_clean(spark):
    rows = flat_bars("SPLT", [100.0, 101.0, 50.5, 51.0]) + flat_bars("CALM", [100.0, 101.0, 100.0, 99.0])
    inputs = QualityInputs(stock_prices=prices(spark, rows),
                           corporate_actions=actions(spark, [split_action("SPLT", D(2024, 3, 5), 1.0, 2.0, "S1")]))  # fmt: skip
    (result,) = run_checks(inputs, D(2024, 3, 6), MARCH_SESSIONS[:4], only=["price_jumps"])
    assert (result.status, result.failed_rows) == ("pass", 0), result.details


def test_price_jumps_follow_the_security_not_the_ticker(spark):
    """A rename is no move, a reused ticker's first bar is not compared with the previous company's last close, and a
    split announced under the new ticker explains the move across the rename (an action keyed by its day's ticker)."""
    identified = T.StructType(PRICE_FIELDS + [T.StructField("security_id", T.StringType())])
    days = MARCH_SESSIONS
    rows = [
        *[bar("OLD", d, close=c) + ("FIGI-1",) for d, c in zip(days[:3], [100.0, 101.0, 102.0], strict=True)],
        *[bar("NEW", d, close=c) + ("FIGI-1",) for d, c in zip(days[3:6], [51.5, 52.0, 51.0], strict=True)],  # 1:2 ex 6th
        # OLD reused by another company from the 7th, at another price level.
        *[bar("OLD", d, close=c) + ("FIGI-2",) for d, c in zip(days[6:9], [10.0, 10.2, 10.1], strict=True)],
        # A bar of an earlier version (no security_id): its ticker is its series.
        bar("LEGACY", days[0], close=20.0) + (None,),
        bar("LEGACY", days[1], close=40.0) + (None,),
    ]
    bars = spark.createDataFrame(rows, identified)
    inputs = QualityInputs(stock_prices=bars, price_context=bars,
                           corporate_actions=actions(spark, [split_action("NEW", days[3], 1.0, 2.0, "S1")]))  # fmt: skip

    (result,) = run_checks(inputs, days[8], days[:9], only=["price_jumps"])

    assert keys(result, "symbol", "previous_date", "date") == [("LEGACY", days[0], days[1])], result.details
    # The same bars named by ticker alone: the reuse is a jump, and the old ticker's move into the split is unexplained.
    (by_ticker,) = run_checks(QualityInputs(stock_prices=bars.drop("security_id"), corporate_actions=inputs.corporate_actions),
                              days[8], days[:9], only=["price_jumps"])  # fmt: skip
    assert ("OLD", days[2], days[6]) in keys(by_ticker, "symbol", "previous_date", "date")


def test_outliers_follow_the_security(spark):
    """The close change into a reused ticker's first bar is not the previous company's: no outlier there."""
    identified = T.StructType(PRICE_FIELDS + [T.StructField("security_id", T.StringType())])
    rows = [
        bar("REUS", d, c, c, c, c, v, c, 10) + ("FIGI-1",)
        for d, c, v in zip(MARCH_SESSIONS[:8], CALM_CLOSES[:8], CALM_VOLUMES[:8], strict=True)
    ]
    rows += [bar("REUS", d, c / 10, c / 10, c / 10, c / 10, v, c / 10, 10) + ("FIGI-2",)
             for d, c, v in zip(MARCH_SESSIONS[8:], CALM_CLOSES[8:], CALM_VOLUMES[8:], strict=True)]  # fmt: skip
    bars = spark.createDataFrame(rows, identified)
    (result,) = run_checks(QualityInputs(stock_prices=bars), D(2024, 3, 18), MARCH_SESSIONS, only=["outliers"])
    assert (result.status, result.failed_rows) == ("pass", 0), result.details
    (by_ticker,) = run_checks(QualityInputs(stock_prices=bars.drop("security_id")), D(2024, 3, 18), MARCH_SESSIONS,
                              only=["outliers"])  # fmt: skip
    assert keys(by_ticker, "symbol", "date", "measure") == [("REUS", D(2024, 3, 13), "close_change")]


# ---------------------------------------------------------------------------- running, reporting, gate


def test_none_inputs_skip_their_checks(spark):
    results = run_checks(QualityInputs(stock_prices=prices(spark, CLEAN_BARS[:1])), DS, SPAN)
    emitted = {(r.name, r.table_name) for r in results}
    assert emitted == {
        ("duplicates", "stock_prices"),
        ("null_values", "stock_prices"),
        ("ohlc_consistency", "stock_prices"),
        ("volume_non_negative", "stock_prices"),
        ("completeness_days", "stock_prices"),
        ("outliers", "stock_prices"),
    }
    # one bar on the 28th only: the 26th and 27th sessions have no bar
    assert [r.failed_rows for r in results if r.name == "completeness_days"] == [2]
    release(results)


def test_thresholds_are_validated():
    assert resolve_thresholds({"outlier_z": 5})["outlier_z"] == 5
    assert resolve_thresholds(None)["severity"] == DEFAULT_THRESHOLDS["severity"]
    with pytest.raises(ConfigError, match="must be one of"):
        resolve_thresholds({"severity": {"outliers": "fatal"}})
    with pytest.raises(ConfigError, match="unknown checks"):
        resolve_thresholds({"severity": {"no_such_check": "warn"}})
    with pytest.raises(ConfigError, match="jump_ratio must be a factor above 1"):
        resolve_thresholds({"jump_ratio": 0.5})
    assert resolve_thresholds(None)["severity"]["price_jumps"] == "warn"
    assert resolve_thresholds(None)["severity"]["corporate_actions"] == "error"


def test_unknown_check_name(spark):
    with pytest.raises(ConfigError, match="unknown quality checks"):
        run_checks(QualityInputs(), DS, SPAN, only=["duplicate"])


def make_result(spark, name, table_name, severity, failed_rows):
    empty = spark.createDataFrame([], "symbol string")
    return CheckResult(name, table_name, severity, failed_rows, f"{failed_rows} things", empty)


def test_gate_names_exactly_the_failed_error_checks(spark):
    results = [
        make_result(spark, "duplicates", "raw_daily_bars", "error", 1),
        make_result(spark, "duplicates", "stock_prices", "error", 0),
        make_result(spark, "null_values", "stock_prices", "error", 3),
        make_result(spark, "completeness_tickers", "stock_prices", "warn", 7),
    ]
    assert [(r.name, r.table_name) for r in failed_errors(results)] == [
        ("duplicates", "raw_daily_bars"),
        ("null_values", "stock_prices"),
    ]
    with pytest.raises(QualityGateError) as raised:
        enforce_gate(results, DS)
    assert str(raised.value) == (
        "quality gate failed: duplicates on raw_daily_bars (1 rows), null_values on stock_prices (3 rows); "
        "see quality_results for ds 2024-03-28"
    )


def test_gate_passes_warn_only_failures(spark):
    results = [
        make_result(spark, "outliers", "stock_prices", "warn", 2),
        make_result(spark, "completeness_tickers", "stock_prices", "warn", 7),
        make_result(spark, "duplicates", "stock_prices", "error", 0),
    ]
    assert failed_errors(results) == []
    enforce_gate(results, DS)  # does not raise


def test_gate_on_real_checks(spark):
    inputs = QualityInputs(raw_daily_bars=raw(spark, [bar("AAPL", DS), bar("AAPL", DS, high=8.0)]))
    results = run_checks(inputs, DS, [DS], only=["duplicates", "ohlc_consistency", "null_values"])
    with pytest.raises(
        QualityGateError,
        match=r"^quality gate failed: duplicates on raw_daily_bars \(1 rows\), "
        r"ohlc_consistency on raw_daily_bars \(1 rows\); see quality_results for ds 2024-03-28$",
    ):
        enforce_gate(results, DS)


def test_results_frame(spark):
    checked_at = dt.datetime(2024, 3, 28, 23, 0, 0)
    results = [
        make_result(spark, "duplicates", "raw_daily_bars", "error", 2),
        make_result(spark, "outliers", "stock_prices", "warn", 0),
    ]
    frame = results_frame(spark, results, DS, checked_at)
    expected = spark.createDataFrame(
        [
            (DS, "raw_daily_bars", "duplicates", "error", "fail", 2, "2 things", checked_at),
            (DS, "stock_prices", "outliers", "warn", "pass", 0, "0 things", checked_at),
        ],
        QUALITY_RESULTS_SCHEMA,
    )
    assert frame.schema == QUALITY_RESULTS_SCHEMA
    assert_df_equality(frame, expected, ignore_row_order=True)
