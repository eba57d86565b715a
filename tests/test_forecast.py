"""lib.analytics.forecast and steps.run_forecast: no look-ahead, metrics that recompute from the forecasts (every model on the
same ones), same re-run."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from lib.analytics import forecast
from lib.core.trading_days import trading_days
from lib.running import steps
from lib.settings.config import RunConfig
from lib.storage import catalog

D = dt.date
DAYS = trading_days(D(2023, 1, 3), D(2024, 4, 30))
HORIZON = 3


def bars(symbol: str, seed: int, days=DAYS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(days)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0005, 0.015, n)))
    return pd.DataFrame({"symbol": symbol, "date": days, "open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": 1e6 + seed, "vwap": close, "transactions": 10})  # fmt: skip


ALL_BARS = pd.concat([bars("AAA", 1), bars("BBB", 2)], ignore_index=True)
# CCC is listed on 2024-03-20: the linear model needs 20 returns (ret_20), so it has no forecast for CCC's first
# origins of the run while naive and drift do, and the scores must leave those origins out for every model.
LATE_START = D(2024, 3, 20)
RUN_BARS = pd.concat([ALL_BARS, bars("CCC", 3, [d for d in DAYS if d >= LATE_START])], ignore_index=True)


def test_a_forecast_reads_no_bar_after_its_origin(spark):
    origins = [D(2024, 3, 28), D(2024, 4, 1)]  # two months: two fitted models
    full = spark.createDataFrame(ALL_BARS)
    columns = ["symbol", "model", "origin_date", "target_date", "horizon"]
    for origin in origins:
        truncated = spark.createDataFrame(ALL_BARS[ALL_BARS["date"] <= origin])
        seen = forecast.walk_forward(spark, full, origin, origin, HORIZON).toPandas().sort_values(columns)
        blind = forecast.walk_forward(spark, truncated, origin, origin, HORIZON).toPandas().sort_values(columns)
        assert set(seen["model"]) == {"naive", "drift", "linear"} and len(seen) == 2 * 3 * HORIZON
        pd.testing.assert_frame_equal(seen.reset_index(drop=True), blind.reset_index(drop=True), rtol=1e-12)


@pytest.mark.parametrize("constant", [None, "feature", "label"])
def test_the_linear_model_is_spark_mllibs_linear_regression(spark, constant):
    """forecast.fit_ridge solves on the driver what Spark MLlib's LinearRegression(regParam=REG_PARAM,
    solver="normal") fits: the same coefficients and intercept on the same samples, including a constant feature
    (Spark gives it 0) and a constant label (the intercept alone)."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    rng = np.random.default_rng(7)
    n, columns = 400, [f"x{i}" for i in range(6)]
    features = rng.normal(0.0, [0.01, 0.03, 0.1, 0.02, 15.0, 1.4], (n, 6)) + [0.0, 0.001, 0.0, 0.02, 50.0, 3.0]
    label = features @ [0.3, -0.1, 0.05, 0.8, 0.0002, 0.001] + rng.normal(0.0, 0.01, n)
    if constant == "feature":
        features[:, 5] = 3.0
    if constant == "label":
        label[:] = 0.004
    frame = pd.DataFrame(features, columns=columns).assign(label=label)
    assembled = VectorAssembler(inputCols=columns, outputCol="features").transform(spark.createDataFrame(frame))
    spark_model = LinearRegression(regParam=forecast.REG_PARAM, solver="normal").fit(assembled)
    coefficients, intercept = forecast.fit_ridge(features, label)
    np.testing.assert_allclose(coefficients, spark_model.coefficients.toArray(), rtol=1e-7, atol=1e-12)
    assert intercept == pytest.approx(spark_model.intercept, rel=1e-7, abs=1e-12)
    if constant == "feature":
        assert coefficients[5] == 0.0


def test_target_dates_are_trading_days_after_the_origin():
    rows = forecast.target_dates([D(2024, 3, 27)], 3)  # Good Friday 2024-03-29 is closed
    assert rows == [(D(2024, 3, 27), 1, D(2024, 3, 28)), (D(2024, 3, 27), 2, D(2024, 4, 1)), (D(2024, 3, 27), 3, D(2024, 4, 2))]


@pytest.fixture(scope="module")
def forecast_run(spark, warehouse):
    config = RunConfig(ds=D(2024, 4, 30), start_ds=D(2024, 4, 15), warehouse=str(warehouse), namespace="forecast_run",
                       horizon_days=HORIZON, symbols=("AAA", "BBB", "CCC"))  # fmt: skip
    catalog.ensure_tables(spark, config)
    frame = spark.createDataFrame(RUN_BARS, catalog.BAR_SCHEMA)
    catalog.replace_rows(spark, config, "stock_prices", frame, "date", DAYS[0], DAYS[-1])
    return config, steps.run_forecast(spark, config)


def test_forecasts_rows_and_actuals(forecast_run):
    config, report = forecast_run
    table = report.forecasts
    origins = trading_days(config.start_ds, config.ds)
    assert sorted(report.symbols) == ["AAA", "BBB", "CCC"]
    per_model = table.groupby(["model", "symbol"]).size()
    assert (per_model.drop("linear") == HORIZON * len(origins)).all()
    assert per_model[("linear", "AAA")] == per_model[("linear", "BBB")] == HORIZON * len(origins)
    assert 0 < per_model[("linear", "CCC")] < HORIZON * len(origins)  # no linear forecast before 20 returns
    assert not table.duplicated(["symbol", "model", "origin_date", "horizon"]).any()
    assert table["actual_close"].isna().equals(table["target_date"] > config.ds)
    closes = RUN_BARS.set_index(["symbol", "date"])["close"]
    known = table.dropna(subset=["actual_close"])
    expected = [closes[(s, d)] for s, d in zip(known["symbol"], known["target_date"], strict=True)]
    np.testing.assert_allclose(known["actual_close"], expected)
    naive = table[table["model"] == "naive"]
    np.testing.assert_allclose(naive["predicted_close"],
                               [closes[(s, d)] for s, d in zip(naive["symbol"], naive["origin_date"], strict=True)])  # fmt: skip


def common_forecasts(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with a known actual whose (symbol, origin_date, horizon) every model of the table forecast."""
    known = table.dropna(subset=["actual_close"])
    models = set(known["model"])
    keys = ["symbol", "origin_date", "horizon"]
    forecast_by = {key: set(rows["model"]) for key, rows in known.groupby(keys)}
    everyone = [forecast_by[key] == models for key in zip(known["symbol"], known["origin_date"], known["horizon"], strict=True)]
    return known[everyone]


def test_metrics_recompute_from_the_forecasts_table(spark, forecast_run):
    config, report = forecast_run
    table = common_forecasts(catalog.read_table(spark, config, "forecasts").toPandas())
    assert (table["symbol"] == "CCC").any() and set(table["model"]) == {"naive", "drift", "linear"}
    origin_close = table[table["model"] == "naive"].groupby(["symbol", "origin_date"])["predicted_close"].first()
    stored = catalog.read_table(spark, config, "forecast_metrics").toPandas().set_index(["model", "horizon"])
    assert set(stored["ds"]) == {config.ds}
    assert len(stored) == len(table.groupby(["model", "horizon"]))
    for (model, horizon), rows in table.groupby(["model", "horizon"]):
        error = rows["predicted_close"] - rows["actual_close"]
        mae = error.abs().mean()
        naive_rows = table[(table["model"] == "naive") & (table["horizon"] == horizon)]
        naive_mae = (naive_rows["predicted_close"] - naive_rows["actual_close"]).abs().mean()
        start = origin_close.loc[list(zip(rows["symbol"], rows["origin_date"], strict=True))].to_numpy()
        hits = np.sign(rows["predicted_close"].to_numpy() - start) == np.sign(rows["actual_close"].to_numpy() - start)
        got = stored.loc[(model, horizon)]
        assert got["n"] == len(rows)
        assert got["mae"] == pytest.approx(mae) and got["rmse"] == pytest.approx(np.sqrt((error**2).mean()))
        assert got["mape"] == pytest.approx((error.abs() / rows["actual_close"]).mean())
        assert got["skill_vs_naive"] == pytest.approx(1 - mae / naive_mae)
        if model == "naive":
            assert pd.isna(got["directional_accuracy"])
        else:
            assert got["directional_accuracy"] == pytest.approx(hits.mean())


def test_every_model_is_scored_on_the_same_forecasts(forecast_run):
    _, report = forecast_run
    known = report.forecasts.dropna(subset=["actual_close"]).groupby(["model", "horizon"]).size()
    assert (known["naive"] > known["linear"]).all()  # CCC's first origins: naive forecast them, linear did not
    for horizon, rows in report.metrics.groupby("horizon"):
        assert set(rows["model"]) == {"naive", "drift", "linear"}
        assert rows["n"].nunique() == 1 and rows["n"].iloc[0] == known[("linear", horizon)], rows
    naive = report.metrics[report.metrics["model"] == "naive"]
    assert (naive["skill_vs_naive"] == 0.0).all()


def test_metrics_by_hand(spark):
    """Origin 04-01 lacks a linear forecast and 04-03's actual is unknown: only 04-02 is scored, for every model."""
    rows = [
        ("AAA", "naive", D(2024, 4, 1), 1, 10.0, 11.0),
        ("AAA", "drift", D(2024, 4, 1), 1, 10.5, 11.0),
        ("AAA", "naive", D(2024, 4, 2), 1, 11.0, 12.0),
        ("AAA", "drift", D(2024, 4, 2), 1, 11.5, 12.0),
        ("AAA", "linear", D(2024, 4, 2), 1, 10.5, 12.0),
        ("AAA", "naive", D(2024, 4, 3), 1, 12.0, None),
        ("AAA", "drift", D(2024, 4, 3), 1, 12.5, None),
        ("AAA", "linear", D(2024, 4, 3), 1, 12.2, None),
    ]
    frame = spark.createDataFrame(
        rows, "symbol string, model string, origin_date date, horizon int, predicted_close double, actual_close double"
    )
    got = forecast.metrics(frame).toPandas().set_index("model").sort_index()
    expected = pd.DataFrame(
        {"model": ["drift", "linear", "naive"], "horizon": [1, 1, 1], "n": [1, 1, 1], "mae": [0.5, 1.5, 1.0],
         "rmse": [0.5, 1.5, 1.0], "mape": [0.5 / 12, 1.5 / 12, 1.0 / 12], "directional_accuracy": [1.0, 0.0, None],
         "skill_vs_naive": [0.5, -0.5, 0.0]}
    ).set_index("model")  # fmt: skip
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_a_re_run_writes_the_same_forecasts(spark, forecast_run):
    config, report = forecast_run
    again = steps.run_forecast(spark, config)
    keys = ["symbol", "model", "origin_date", "horizon"]
    pd.testing.assert_frame_equal(report.forecasts.sort_values(keys).reset_index(drop=True),
                                  again.forecasts.sort_values(keys).reset_index(drop=True), rtol=0, atol=0)  # fmt: skip
    assert catalog.read_table(spark, config, "forecasts").count() == len(report.forecasts)
