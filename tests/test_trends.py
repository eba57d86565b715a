"""Trend analytics on tiny hand-computed cases: a month with a missing day, a one-bar symbol, a flat price; and
04_trends' windows, which read the history before the span."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from lib.analytics import trends
from lib.core.trading_days import trading_days
from lib.running import steps
from lib.settings.config import RunConfig
from lib.storage import catalog, monthly

PRECISION = 1e-6

DAILY_SCHEMA = StructType(
    [
        StructField("symbol", StringType()),
        StructField("date", DateType()),
        StructField("open", DoubleType()),
        StructField("high", DoubleType()),
        StructField("low", DoubleType()),
        StructField("close", DoubleType()),
        StructField("volume", DoubleType()),
        StructField("vwap", DoubleType()),
        StructField("transactions", LongType()),
    ]
)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


# AAA trades Wed 28 Feb .. Wed 6 Mar 2024 but has no bar on Tue 5 Mar (a missing trading day);
# BBB has a single bar; CCC's close never moves.
BARS = [
    ("AAA", "2024-02-28", 10.0, 100.0),
    ("AAA", "2024-02-29", 11.0, 110.0),
    ("AAA", "2024-03-01", 12.0, 90.0),
    ("AAA", "2024-03-04", 9.0, 100.0),
    ("AAA", "2024-03-06", 15.0, 500.0),
    ("BBB", "2024-03-01", 50.0, 1000.0),
    ("CCC", "2024-02-28", 20.0, 100.0),
    ("CCC", "2024-02-29", 20.0, 100.0),
    ("CCC", "2024-03-01", 20.0, 100.0),
    ("CCC", "2024-03-04", 20.0, 100.0),
    ("CCC", "2024-03-06", 20.0, 130.0),
]


def daily_frame(spark, bars):
    rows = [(symbol, d(date), close, close, close, close, volume, None, None) for symbol, date, close, volume in bars]
    return spark.createDataFrame(rows, DAILY_SCHEMA)


@pytest.fixture(scope="module")
def daily(spark):
    return daily_frame(spark, BARS)


def keyed(df, *columns):
    return df.select("symbol", "date", *columns).orderBy("symbol", "date")


def test_leaders_by_day_sum_the_20_sessions_up_to_each_day_and_break_ties_by_symbol(spark):
    friday, monday = dt.date(2024, 3, 1), dt.date(2024, 3, 4)
    bars = [
        ("A", "2024-03-01", 5.0, 100.0), ("A", "2024-03-04", 5.0, 100.0),  # 500, then 1000
        ("B", "2024-03-01", 10.0, 100.0),  # 1000; no bar on Monday: not a leader of Monday
        ("C", "2024-03-01", 30.0, 100.0), ("C", "2024-03-04", 1.0, 10.0),  # 3000, then 3010
        ("D", "2024-03-04", 1.0, 10.0), ("F", "2024-03-04", 10.0, 1.0),  # 10 each: D before F
        ("E", "2024-01-02", 1000.0, 1000.0),  # 43 sessions before Monday: out of its 20
        ("E", "2024-03-04", 1.0, 1.0),  # 1
    ]  # fmt: skip
    daily = daily_frame(spark, bars)

    def leaders(days, n):
        rows = trends.leaders_by_day(daily, days, n).orderBy("day", F.desc("dollar_volume"), "symbol").collect()
        return [(r.day, r.symbol, r.dollar_volume) for r in rows]

    assert leaders([friday, monday], 2) == [(friday, "C", 3000.0), (friday, "B", 1000.0),
                                            (monday, "C", 3010.0), (monday, "A", 1000.0)]  # fmt: skip
    assert [symbol for _, symbol, _ in leaders([monday], 10)] == ["C", "A", "D", "F", "E"]
    assert leaders([monday], 0) == [] and leaders([], 3) == []


def test_with_returns_uses_previous_bar_across_a_missing_day(spark, daily):
    schema = StructType(
        [
            StructField("symbol", StringType()),
            StructField("date", DateType()),
            StructField("daily_return", DoubleType()),
            StructField("cumulative_return", DoubleType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            ("AAA", d("2024-02-28"), None, 0.0),
            ("AAA", d("2024-02-29"), 0.1, 0.1),
            ("AAA", d("2024-03-01"), 1 / 11, 0.2),
            ("AAA", d("2024-03-04"), -0.25, -0.1),
            ("AAA", d("2024-03-06"), 2 / 3, 0.5),  # 15 / 9 - 1: the previous bar is 4 March
            ("BBB", d("2024-03-01"), None, 0.0),
            ("CCC", d("2024-02-28"), None, 0.0),
            ("CCC", d("2024-02-29"), 0.0, 0.0),
            ("CCC", d("2024-03-01"), 0.0, 0.0),
            ("CCC", d("2024-03-04"), 0.0, 0.0),
            ("CCC", d("2024-03-06"), 0.0, 0.0),
        ],
        schema,
    )
    result = trends.with_returns(daily)

    assert result.columns == DAILY_SCHEMA.fieldNames() + ["daily_return", "cumulative_return"]
    assert_approx_df_equality(keyed(result, "daily_return", "cumulative_return"), expected, PRECISION, ignore_nullable=True)


MONTHLY_SCHEMA = StructType(
    [
        StructField("symbol", StringType()),
        StructField("month_start", DateType()),
        StructField("first_close", DoubleType()),
        StructField("last_close", DoubleType()),
        StructField("monthly_return", DoubleType()),
    ]
)


def test_monthly_returns_uses_first_and_last_bar_of_each_month(spark, daily):
    expected = spark.createDataFrame(
        [
            ("AAA", d("2024-02-01"), 10.0, 11.0, 0.1),
            ("AAA", d("2024-03-01"), 12.0, 15.0, 0.25),
            ("BBB", d("2024-03-01"), 50.0, 50.0, 0.0),
            ("CCC", d("2024-02-01"), 20.0, 20.0, 0.0),
            ("CCC", d("2024-03-01"), 20.0, 20.0, 0.0),
        ],
        MONTHLY_SCHEMA,
    )
    result = trends.monthly_returns(daily).orderBy("symbol", "month_start")

    assert_approx_df_equality(result, expected, PRECISION, ignore_nullable=True)


def test_monthly_returns_skips_bars_without_a_close(spark):
    daily = daily_frame(
        spark,
        [
            ("AAA", "2024-03-01", None, 10.0),
            ("AAA", "2024-03-04", 11.0, 10.0),
            ("AAA", "2024-03-05", 12.0, 10.0),  # the high, neither first nor last
            ("AAA", "2024-03-15", 7.0, 10.0),  # the low, neither first nor last
            ("AAA", "2024-03-28", 10.0, 10.0),
            ("AAA", "2024-03-29", None, 10.0),
        ],
    )
    expected = spark.createDataFrame([("AAA", d("2024-03-01"), 11.0, 10.0, 10 / 11 - 1)], MONTHLY_SCHEMA)

    assert_approx_df_equality(trends.monthly_returns(daily), expected, PRECISION, ignore_nullable=True)


def test_rolling_volatility_is_null_until_window_returns_and_zero_for_flat_price(spark, daily):
    # With two returns a and b the sample stdev is |a - b| / sqrt(2); annualised: |a - b| * sqrt(126).
    root_126 = math.sqrt(126)
    schema = StructType(
        [
            StructField("symbol", StringType()),
            StructField("date", DateType()),
            StructField("rolling_volatility", DoubleType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            ("AAA", d("2024-02-28"), None),
            ("AAA", d("2024-02-29"), None),  # one return only
            ("AAA", d("2024-03-01"), (0.1 - 1 / 11) * root_126),
            ("AAA", d("2024-03-04"), (1 / 11 + 0.25) * root_126),
            ("AAA", d("2024-03-06"), (2 / 3 + 0.25) * root_126),
            ("BBB", d("2024-03-01"), None),
            ("CCC", d("2024-02-28"), None),
            ("CCC", d("2024-02-29"), None),
            ("CCC", d("2024-03-01"), 0.0),
            ("CCC", d("2024-03-04"), 0.0),
            ("CCC", d("2024-03-06"), 0.0),
        ],
        schema,
    )
    result = trends.rolling_volatility(daily, window=2)

    assert {"daily_return", "rolling_volatility"} <= set(result.columns)
    assert_approx_df_equality(keyed(result, "rolling_volatility"), expected, PRECISION, ignore_nullable=True)


def test_rolling_volatility_rejects_a_window_below_two(daily):
    with pytest.raises(ValueError, match="window >= 2"):
        trends.rolling_volatility(daily, window=1)


def test_moving_averages_are_null_until_enough_bars(spark, daily):
    schema = StructType(
        [
            StructField("symbol", StringType()),
            StructField("date", DateType()),
            StructField("ma_2", DoubleType()),
            StructField("ma_3", DoubleType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            ("AAA", d("2024-02-28"), None, None),
            ("AAA", d("2024-02-29"), 10.5, None),
            ("AAA", d("2024-03-01"), 11.5, 11.0),
            ("AAA", d("2024-03-04"), 10.5, 32 / 3),
            ("AAA", d("2024-03-06"), 12.0, 12.0),
            ("BBB", d("2024-03-01"), None, None),
            ("CCC", d("2024-02-28"), None, None),
            ("CCC", d("2024-02-29"), 20.0, None),
            ("CCC", d("2024-03-01"), 20.0, 20.0),
            ("CCC", d("2024-03-04"), 20.0, 20.0),
            ("CCC", d("2024-03-06"), 20.0, 20.0),
        ],
        schema,
    )
    result = trends.moving_averages(daily, windows=(2, 3))

    assert result.columns == DAILY_SCHEMA.fieldNames() + ["ma_2", "ma_3"]
    assert_approx_df_equality(keyed(result, "ma_2", "ma_3"), expected, PRECISION, ignore_nullable=True)


def test_moving_averages_default_columns(daily):
    assert trends.moving_averages(daily).columns[-3:] == ["ma_20", "ma_50", "ma_200"]


def test_drawdowns_track_the_running_peak(spark, daily):
    schema = StructType(
        [
            StructField("symbol", StringType()),
            StructField("date", DateType()),
            StructField("running_peak", DoubleType()),
            StructField("drawdown", DoubleType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            ("AAA", d("2024-02-28"), 10.0, 0.0),
            ("AAA", d("2024-02-29"), 11.0, 0.0),
            ("AAA", d("2024-03-01"), 12.0, 0.0),
            ("AAA", d("2024-03-04"), 12.0, -0.25),
            ("AAA", d("2024-03-06"), 15.0, 0.0),
            ("BBB", d("2024-03-01"), 50.0, 0.0),
            ("CCC", d("2024-02-28"), 20.0, 0.0),
            ("CCC", d("2024-02-29"), 20.0, 0.0),
            ("CCC", d("2024-03-01"), 20.0, 0.0),
            ("CCC", d("2024-03-04"), 20.0, 0.0),
            ("CCC", d("2024-03-06"), 20.0, 0.0),
        ],
        schema,
    )
    result = trends.drawdowns(daily)

    assert_approx_df_equality(keyed(result, "running_peak", "drawdown"), expected, PRECISION, ignore_nullable=True)


def test_max_drawdown_per_symbol(spark, daily):
    schema = StructType([StructField("symbol", StringType()), StructField("max_drawdown", DoubleType())])
    expected = spark.createDataFrame([("AAA", -0.25), ("BBB", 0.0), ("CCC", 0.0)], schema)

    result = trends.max_drawdown(daily).orderBy("symbol")

    assert_approx_df_equality(result, expected, PRECISION, ignore_nullable=True)


def test_top_movers_ranks_gainers_and_losers_per_month(spark):
    returns = spark.createDataFrame(
        [
            ("A", d("2024-03-01"), 0.3),
            ("B", d("2024-03-01"), 0.1),
            ("E", d("2024-03-01"), 0.1),  # ties with B; B ranks first by symbol, E is cut at n=2
            ("C", d("2024-03-01"), -0.2),
            ("D", d("2024-03-01"), -0.05),
            ("A", d("2024-02-01"), -0.1),  # a month where nothing rose: no gainers
            ("F", d("2024-02-01"), 0.0),  # unchanged: neither a gainer nor a loser
        ],
        StructType(
            [
                StructField("symbol", StringType()),
                StructField("month_start", DateType()),
                StructField("monthly_return", DoubleType()),
            ]
        ),
    )
    expected = spark.createDataFrame(
        [
            (d("2024-02-01"), "loser", 1, "A", -0.1),
            (d("2024-03-01"), "gainer", 1, "A", 0.3),
            (d("2024-03-01"), "gainer", 2, "B", 0.1),
            (d("2024-03-01"), "loser", 1, "C", -0.2),
            (d("2024-03-01"), "loser", 2, "D", -0.05),
        ],
        StructType(
            [
                StructField("month_start", DateType()),
                StructField("direction", StringType()),
                StructField("rank", IntegerType()),
                StructField("symbol", StringType()),
                StructField("monthly_return", DoubleType()),
            ]
        ),
    )
    result = trends.top_movers(returns, n=2).orderBy("month_start", "direction", "rank")

    assert_df_equality(result, expected, ignore_nullable=True)


ANOMALY_SCHEMA = StructType(
    [
        StructField("symbol", StringType()),
        StructField("date", DateType()),
        StructField("volume_median", DoubleType()),
        StructField("volume_mad", DoubleType()),
        StructField("volume_z", DoubleType()),
        StructField("is_anomaly", BooleanType()),
    ]
)


def test_volume_anomalies_robust_z_against_trailing_history(spark, daily):
    expected = spark.createDataFrame(
        [
            # AAA volumes 100, 110, 90, 100, 500.
            ("AAA", d("2024-02-28"), None, None, None, False),
            ("AAA", d("2024-02-29"), None, None, None, False),
            ("AAA", d("2024-03-01"), None, None, None, False),
            # history 100, 110, 90: median 100, |dev| 0, 10, 10 -> MAD 10
            ("AAA", d("2024-03-04"), 100.0, 10.0, 0.0, False),
            # history 110, 90, 100: median 100, MAD 10; (500 - 100) / 14.826
            ("AAA", d("2024-03-06"), 100.0, 10.0, 400 / 14.826, True),
            ("BBB", d("2024-03-01"), None, None, None, False),
            ("CCC", d("2024-02-28"), None, None, None, False),
            ("CCC", d("2024-02-29"), None, None, None, False),
            ("CCC", d("2024-03-01"), None, None, None, False),
            # a constant history: no spread, equal volume -> z 0
            ("CCC", d("2024-03-04"), 100.0, 0.0, 0.0, False),
            # a constant history and a different volume: no finite z, but an anomaly
            ("CCC", d("2024-03-06"), 100.0, 0.0, None, True),
        ],
        ANOMALY_SCHEMA,
    )
    result = trends.volume_anomalies(daily, window=3, z=3.5)

    assert result.columns == DAILY_SCHEMA.fieldNames() + ["volume_median", "volume_mad", "volume_z", "is_anomaly"]
    assert_approx_df_equality(
        keyed(result, "volume_median", "volume_mad", "volume_z", "is_anomaly"),
        expected,
        PRECISION,
        ignore_nullable=True,
    )


def test_volume_anomalies_even_window_and_zero_mad_fallback(spark):
    daily = daily_frame(
        spark,
        [
            ("EVN", "2024-03-01", 1.0, 100.0),
            ("EVN", "2024-03-04", 1.0, 120.0),
            ("EVN", "2024-03-05", 1.0, 80.0),
            ("EVN", "2024-03-06", 1.0, 140.0),
            ("EVN", "2024-03-07", 1.0, 250.0),
            ("FLB", "2024-03-01", 1.0, 100.0),
            ("FLB", "2024-03-04", 1.0, 100.0),
            ("FLB", "2024-03-05", 1.0, 100.0),
            ("FLB", "2024-03-06", 1.0, 160.0),
            ("FLB", "2024-03-07", 1.0, 120.0),
        ],
    )
    result = trends.volume_anomalies(daily, window=4, z=3.5).where(F.col("date") == d("2024-03-07"))
    expected = spark.createDataFrame(
        [
            # history 80, 100, 120, 140: median (100 + 120) / 2 = 110; |dev| 30, 10, 10, 30 -> MAD 20;
            # (250 - 110) / (20 * 1.4826) = 4.72
            ("EVN", d("2024-03-07"), 110.0, 20.0, 140 / 29.652, True),
            # history 100, 100, 100, 160: median 100, MAD 0; mean |dev| 15 -> scale 15 * 1.2533
            ("FLB", d("2024-03-07"), 100.0, 0.0, 20 / (15 * 1.2533), False),
        ],
        ANOMALY_SCHEMA,
    )

    assert_approx_df_equality(
        keyed(result, "volume_median", "volume_mad", "volume_z", "is_anomaly"),
        expected,
        PRECISION,
        ignore_nullable=True,
    )


def test_return_correlations_follow_the_requested_symbol_order(spark):
    # P and Q both return +10 %, +10 %, -10 %; R returns -10 %, -10 %, +10 %.
    bars = [
        ("P", "2024-03-01", 10.0, 1.0),
        ("P", "2024-03-04", 11.0, 1.0),
        ("P", "2024-03-05", 12.1, 1.0),
        ("P", "2024-03-06", 10.89, 1.0),
        ("Q", "2024-03-01", 20.0, 1.0),
        ("Q", "2024-03-04", 22.0, 1.0),
        ("Q", "2024-03-05", 24.2, 1.0),
        ("Q", "2024-03-06", 21.78, 1.0),
        ("R", "2024-03-01", 100.0, 1.0),
        ("R", "2024-03-04", 90.0, 1.0),
        ("R", "2024-03-05", 81.0, 1.0),
        ("R", "2024-03-06", 89.1, 1.0),
        ("S", "2024-03-01", 5.0, 1.0),  # not requested
        ("S", "2024-03-04", 6.0, 1.0),
    ]
    nan = float("nan")
    expected = pd.DataFrame(
        [[1.0, -1.0, -1.0, nan], [-1.0, 1.0, 1.0, nan], [-1.0, 1.0, 1.0, nan], [nan, nan, nan, nan]],
        index=pd.Index(["R", "P", "Q", "ZZZ"], name="symbol"),
        columns=pd.Index(["R", "P", "Q", "ZZZ"], name="symbol"),
    )

    corr = trends.return_correlations(daily_frame(spark, bars), ["R", "P", "Q", "ZZZ"])

    pd.testing.assert_frame_equal(corr, expected, check_exact=False, atol=1e-9)


def test_missing_columns_are_reported(spark):
    frame = spark.createDataFrame([("AAA", 1.0)], "symbol string, price double")
    with pytest.raises(ValueError, match=r"missing \['date', 'close'\]"):
        trends.with_returns(frame)


def test_trend_summary_by_hand(spark):
    # Closes 100, 110, 99, 121 (a null close on Mar 5 is left out): returns 0.1, -0.1, 0.2222...
    bars = [("AAA", d(day), None, None, None, close, None, None, None)
            for day, close in (("2024-03-01", 100.0), ("2024-03-04", 110.0), ("2024-03-05", None),
                               ("2024-03-06", 99.0), ("2024-03-07", 121.0))]  # fmt: skip
    bars.append(("ONE", d("2024-03-07"), None, None, None, 50.0, None, None, None))
    daily = spark.createDataFrame(bars, DAILY_SCHEMA)
    returns = [0.1, -0.1, 121 / 99 - 1]
    mean = sum(returns) / 3
    volatility = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2) * math.sqrt(252)
    rows = trends.trend_summary(daily).orderBy("symbol").collect()

    aaa, one = rows
    assert (aaa.start_date, aaa.end_date, aaa.bars) == (d("2024-03-01"), d("2024-03-07"), 4)
    assert (aaa.first_close, aaa.last_close) == (100.0, 121.0)
    assert aaa.total_return == pytest.approx(0.21, rel=1e-12)
    assert aaa.annualized_volatility == pytest.approx(volatility, rel=1e-12)
    assert aaa.max_drawdown == pytest.approx(99 / 110 - 1, rel=1e-12)
    assert (one.bars, one.total_return, one.max_drawdown, one.annualized_volatility) == (1, 0.0, 0.0, None)


def test_run_trends_windows_read_the_history_before_the_span(spark, warehouse):
    """AAA trades from January 2023, BBB only from March 2024; 04_trends runs over April 2024, its lookback the span."""
    days = trading_days(d("2023-01-03"), d("2024-04-30"))
    rng = np.random.default_rng(7)
    frames = []
    for symbol, first_day in (("AAA", days[0]), ("BBB", d("2024-03-01"))):
        dates = [day for day in days if day >= first_day]
        close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, len(dates))))
        volume = np.round(1e6 * np.exp(rng.normal(0, 0.2, len(dates))))
        frames.append(pd.DataFrame({"symbol": symbol, "date": dates, "open": close, "high": close, "low": close,
                                    "close": close, "volume": volume, "vwap": close, "transactions": 10}))  # fmt: skip
    bars = pd.concat(frames, ignore_index=True)
    config = RunConfig(ds=d("2024-04-30"), start_ds=d("2024-04-01"), warehouse=str(warehouse), namespace="trends_warm_up",
                       symbols=("AAA", "BBB"), lookback_days=29)  # fmt: skip
    catalog.ensure_tables(spark, config)
    prices = spark.createDataFrame(bars, catalog.BAR_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", prices, "date", days[0], days[-1])
    catalog.overwrite_partitions(config, "monthly_stock_prices", monthly.apply_days(prices, None, days))

    report = steps.run_trends(spark, config, lookback_days=29)  # trend_summary of ds: 2024-04-01..30
    first = report.daily[report.daily["date"] == config.start_ds].set_index("symbol")
    aaa = bars[bars["symbol"] == "AAA"].set_index("date")
    assert first.loc["AAA", "ma_200"] == pytest.approx(aaa["close"].rolling(200).mean()[config.start_ds], rel=1e-12)
    assert first.loc["AAA", "ma_50"] == pytest.approx(aaa["close"].rolling(50).mean()[config.start_ds], rel=1e-12)
    volatility = aaa["close"].pct_change().rolling(20).std() * math.sqrt(252)
    assert first.loc["AAA", "rolling_volatility"] == pytest.approx(volatility[config.start_ds], rel=1e-9)
    bbb = bars[bars["symbol"] == "BBB"].set_index("date")  # 21 bars by 2024-04-01: a full 20-bar window, not 50
    assert first.loc["BBB", "ma_20"] == pytest.approx(bbb["close"].rolling(20).mean()[config.start_ds], rel=1e-12)
    assert pd.isna(first.loc["BBB", "ma_50"]) and pd.isna(first.loc["BBB", "ma_200"])

    # The warm-up feeds the windows only: the report, the returns and trend_summary are the span's.
    assert report.daily["date"].min() == config.start_ds and report.start == config.start_ds
    assert first["daily_return"].isna().all() and (first["cumulative_return"] == 0).all()
    span_bars = len(trading_days(config.start_ds, config.ds))
    assert len(report.daily) == 2 * span_bars
    assert set(report.summary_table["start_date"]) == {config.start_ds} and set(report.summary_table["bars"]) == {span_bars}
