"""Walk-forward close forecasts (naive, drift, a linear model on lagged returns) and their out-of-sample scores.

Honesty rules: a forecast made at origin t reads only bars up to t, the linear model of t is fitted only on
samples whose target is known by the last trading day before t's month (so it is refitted once a month, and the
same origin gets the same model whatever the span or the warehouse's last day), and the scores only count
forecasts whose actual close is known, every model on the same ones.

A series is a security when the frame has security_id (lib.analytics.series), else a symbol: a forecast reads its
security's bars under every ticker it traded as, and its row keeps the ticker traded on the origin date.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lib.analytics.indicators import technical_indicators
from lib.analytics.series import carried, series_key
from lib.core.trading_days import trading_days

MODELS = ("naive", "drift", "linear")
FEATURES = ("ret_1", "ret_5", "ret_20", "vol_20", "rsi_14", "horizon")
TRAINING_YEARS = 3  # history the linear model learns from, before its cutoff
REG_PARAM = 1e-3


def features(series: DataFrame) -> DataFrame:
    """Per bar: close, bar number `i`, the drift per day so far, and the linear model's FEATURES but horizon.

    Needs symbol, date, high, low, close, volume (adjusted, one row per symbol and date, no null close). Every
    value of a bar depends only on that bar and the ones before it.
    """
    key, names = series_key(series), carried(series)
    by_date = Window.partitionBy(key).orderBy("date")
    log_close = F.log("close")
    first_close = F.first("close").over(by_date.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    bars = series.select(
        *names,
        "date",
        "close",
        (F.row_number().over(by_date) - 1).alias("i"),
        (log_close - F.lag(log_close, 1).over(by_date)).alias("ret_1"),
        (log_close - F.lag(log_close, 5).over(by_date)).alias("ret_5"),
        (log_close - F.lag(log_close, 20).over(by_date)).alias("ret_20"),
        first_close.alias("first_close"),
    )
    bars = bars.withColumn("vol_20", F.stddev_samp("ret_1").over(by_date.rowsBetween(-19, Window.currentRow)))
    bars = bars.withColumn("drift_per_day", F.when(F.col("i") > 0, (F.col("close") - F.col("first_close")) / F.col("i")))
    rsi = technical_indicators(series).select(key, "date", "rsi_14")
    return bars.join(rsi, [key, "date"]).drop("first_close")


def model_cutoff(origin: dt.date) -> dt.date:
    """The last day whose outcome the linear model of `origin` may learn from: the day before origin's month."""
    return origin.replace(day=1) - dt.timedelta(days=1)


def target_dates(origins: list[dt.date], horizon_days: int) -> list[tuple[dt.date, int, dt.date]]:
    """(origin_date, horizon, target_date) with target_date `horizon` NYSE sessions after origin_date."""
    rows = []
    for origin in origins:
        after = trading_days(origin + dt.timedelta(days=1), origin + dt.timedelta(days=2 * horizon_days + 14))
        rows.extend((origin, h, after[h - 1]) for h in range(1, horizon_days + 1))
    return rows


def _training_samples(bars: DataFrame, horizon_days: int, cutoffs: list[dt.date]) -> DataFrame:
    """Samples (key, date, target_date, FEATURES, label = mean daily log return from a bar to the bar h later) that
    some cutoff of `cutoffs` may learn from: a target on or before the last cutoff, a bar no older than TRAINING_YEARS
    before the first. Which cutoff learns from which sample is for the caller (walk_forward's mask per cutoff)."""
    key = series_key(bars)
    by_date = Window.partitionBy(key).orderBy("date")
    start, end = min(cutoffs) - dt.timedelta(days=365 * TRAINING_YEARS), max(cutoffs)
    samples = []
    for h in range(1, horizon_days + 1):
        labelled = bars.select(
            key,
            "date",
            *[c for c in FEATURES if c != "horizon"],
            F.lit(h).alias("horizon"),
            F.lead("date", h).over(by_date).alias("target_date"),
            ((F.log(F.lead("close", h).over(by_date)) - F.log("close")) / h).alias("label"),
        )
        samples.append(labelled.filter((F.col("target_date") <= F.lit(end)) & (F.col("date") >= F.lit(start))))
    result = samples[0]
    for more in samples[1:]:
        result = result.unionByName(more)
    return result.dropna(subset=[*FEATURES, "label"])


def fit_ridge(features: np.ndarray, label: np.ndarray, reg_param: float = REG_PARAM) -> tuple[np.ndarray, float]:
    """(coefficients, intercept) of Spark MLlib's LinearRegression(regParam=reg_param, solver="normal") with its
    defaults (an intercept, standardization, elasticNetParam 0), in closed form on the driver: Spark's
    WeightedLeastSquares minimizes 1/2n sum (a.x + z - b)^2 + (lambda / delta) 1/2 sum (sigma_j x_j)^2 with
    sigma_j the population std of feature j and delta the label's, whose solution is
    (cov(A) + lambda / delta diag(sigma^2)) x = cov(A, b), z = mean(b) - mean(A).x. A constant feature gets 0, a
    constant label the intercept alone, as Spark does. tests/test_forecast.py checks it against Spark's fit."""
    a_mean, b_mean = features.mean(axis=0), float(label.mean())
    centered, b_centered = features - a_mean, label - b_mean
    n = len(label)
    sigma = np.sqrt((centered * centered).sum(axis=0) / n)
    delta = float(np.sqrt((b_centered * b_centered).sum() / n))
    coefficients = np.zeros(features.shape[1])
    if delta == 0.0:
        return coefficients, b_mean
    used = sigma > 0
    a = centered[:, used]
    gram = a.T @ a / n + np.diag(reg_param / delta * sigma[used] ** 2)
    coefficients[used] = np.linalg.solve(gram, a.T @ b_centered / n)
    return coefficients, b_mean - float(a_mean @ coefficients)


def walk_forward(
    spark: SparkSession,
    series: DataFrame,
    start: dt.date,
    end: dt.date,
    horizon_days: int,
    chosen: DataFrame | None = None,
    trainers: dict[dt.date, list[str]] | None = None,
) -> DataFrame:
    """Forecasts (symbol, model, origin_date, target_date, horizon, predicted_close, and security_id when `series`
    has it) for origins start..end; symbol is the ticker the series traded as on the origin date.

    The origins are the NYSE sessions of start..end on which a series has a bar; `series` as for `features`,
    ending at or after `end` (bars after an origin are never read for its forecast). `chosen` (origin_date and the
    series' key: security_id when `series` has it, else symbol) limits each origin to its series (default: every
    series); `trainers` maps a model cutoff (model_cutoff) to the series (their keys) whose samples the linear model
    of that cutoff learns from (default: every series). Both must be functions of the origin alone for a forecast
    not to depend on the span.

    The linear models of every cutoff learn from one collected set of samples (one Spark job: a few securities'
    years of bars), each solved on the driver by fit_ridge, Spark MLlib's own formula; the forecasts are then
    scored in Spark with each month's coefficients.
    """
    key, names = series_key(series), carried(series)
    bars = features(series).cache()
    origins = trading_days(start, end)
    if not origins:
        return spark.createDataFrame([], "symbol string, model string, origin_date date, target_date date, horizon int, "
                                         "predicted_close double" + "".join(f", {n} string" for n in names[1:]))  # fmt: skip
    targets = spark.createDataFrame(target_dates(origins, horizon_days), "origin_date date, horizon int, target_date date")
    at_origin = bars.filter(F.col("date").between(F.lit(start), F.lit(end))).withColumnRenamed("date", "origin_date")
    if chosen is not None:
        at_origin = at_origin.join(F.broadcast(chosen.select("origin_date", key)), ["origin_date", key])
    grid = at_origin.join(F.broadcast(targets), "origin_date")
    naive = grid.select("symbol", F.lit("naive").alias("model"), "origin_date", "target_date", "horizon",
                        F.col("close").alias("predicted_close"), *names[1:])  # fmt: skip
    drift = grid.filter(F.col("drift_per_day").isNotNull()).select(
        "symbol", F.lit("drift").alias("model"), "origin_date", "target_date", "horizon",
        (F.col("close") + F.col("drift_per_day") * F.col("horizon")).alias("predicted_close"), *names[1:],
    )  # fmt: skip

    cutoffs = sorted({model_cutoff(origin) for origin in origins})
    learners = bars
    if trainers is not None:
        learners = bars.filter(F.col(key).isin(sorted({k for c in cutoffs for k in trainers.get(c, ())})))
    samples = (
        _training_samples(learners, horizon_days, cutoffs)
        .toPandas()
        .sort_values([key, "date", "horizon"], kind="stable")  # one order whatever the span: the same sums
        .reset_index(drop=True)
    )
    months = []
    for cutoff in cutoffs:
        mask = (samples["target_date"] <= cutoff) & (samples["date"] >= cutoff - dt.timedelta(days=365 * TRAINING_YEARS))
        if trainers is not None:
            mask &= samples[key].isin(list(trainers.get(cutoff, ())))
        if mask.sum() < 2:
            continue
        coefficients, intercept = fit_ridge(samples.loc[mask, list(FEATURES)].to_numpy(float),
                                            samples.loc[mask, "label"].to_numpy(float))  # fmt: skip
        months.append((cutoff + dt.timedelta(days=1), float(intercept), *map(float, coefficients)))
    result = naive.unionByName(drift)
    if months:
        model = spark.createDataFrame(months, "model_month date, intercept double, "
                                      + ", ".join(f"coef_{f} double" for f in FEATURES))  # fmt: skip
        prediction = F.col("intercept")
        for feature in FEATURES:
            prediction = prediction + F.col(f"coef_{feature}") * F.col(feature)
        linear = (
            grid.dropna(subset=list(FEATURES))
            .withColumn("model_month", F.trunc("origin_date", "month"))
            .join(F.broadcast(model), "model_month")
            .select(
                "symbol", F.lit("linear").alias("model"), "origin_date", "target_date", "horizon",
                (F.col("close") * F.exp(prediction * F.col("horizon"))).alias("predicted_close"), *names[1:],
            )
        )  # fmt: skip
        result = result.unionByName(linear)
    return result


def origin_factors(series: DataFrame, traded: DataFrame) -> DataFrame:
    """key, origin_date, to_origin: what turns a price of `series` at or before an origin into the origin's basis.

    `series` is an adjusted series (symbol, date, close, adjusted with the actions known at some day L) and `traded`
    the as-traded closes (symbol, date, close); key is the series' (security_id when `series` has it, which `traded`
    must have too, else symbol). The actions with an ex-date after the origin scale every bar up to
    the origin by the same factor, the adjusted close of the origin over its traded close: to_origin is its inverse.
    A forecast made on `series` times to_origin is the forecast the origin's own day made (every model here is
    linear in the price level, or uses returns only), so a forecast does not change when later splits or dividends
    become known.
    """
    key = series_key(series)
    adjusted = series.select(key, F.col("date").alias("origin_date"), F.col("close").alias("_adjusted"))
    as_traded = traded.select(key, F.col("date").alias("origin_date"), F.col("close").alias("_traded"))
    return adjusted.join(as_traded, [key, "origin_date"]).select(
        key, "origin_date", (F.col("_traded") / F.col("_adjusted")).alias("to_origin")
    )


def in_origin_basis(forecasts: DataFrame, factors: DataFrame) -> DataFrame:
    """walk_forward's forecasts (made on an adjusted series) with predicted_close in each origin's basis (`factors`
    from origin_factors, joined on their key)."""
    return (
        forecasts.join(factors, [series_key(factors), "origin_date"])
        .withColumn("predicted_close", F.col("predicted_close") * F.col("to_origin"))
        .drop("to_origin")
    )


def with_actuals(forecasts: DataFrame, series: DataFrame, factors: DataFrame) -> DataFrame:
    """forecasts (in their origins' basis) with actual_close: the target's close of `series` in the origin's basis
    (the traded close restated by the actions between origin and target), null while the target has no bar."""
    key = series_key(series)  # a target traded under a new ticker is still the origin's security
    actual = series.select(key, F.col("date").alias("target_date"), F.col("close").alias("_actual"))
    columns = [c for c in forecasts.columns if c != "actual_close"]
    return (
        forecasts.drop("actual_close")
        .join(factors, [key, "origin_date"], "left")  # an origin without its bar keeps its row, unscored
        .join(actual, [key, "target_date"], "left")
        .select(*columns, (F.col("_actual") * F.col("to_origin")).alias("actual_close"))
    )


def metrics(forecasts: DataFrame) -> DataFrame:
    """model, horizon, n, mae, rmse, mape, directional_accuracy, skill_vs_naive, like for like across models.

    Needs the forecasts table's columns. Every model is scored on the same forecasts: the (symbol, origin_date,
    horizon) that every model of the table forecast with a known actual, so n is the same for all models at a
    horizon (the linear model has no forecast before its first training month, and naive's origins there are
    left out too). The origin's close is the naive forecast of the same symbol and origin, so the scores recompute
    from the table alone. directional_accuracy: the share of forecasts whose move from the origin's close has the
    actual's sign (null for naive, which predicts no move). skill_vs_naive is MAE-based: 1 - MAE(model) /
    MAE(naive) at the same horizon over those forecasts, above 0 when the model beats naive (0 for naive itself).
    """
    keys = ["symbol", "origin_date", "horizon"]
    known = forecasts.filter(F.col("actual_close").isNotNull())
    models = known.agg(F.countDistinct("model").alias("models"))
    common = (
        known.groupBy(*keys)
        .agg(F.countDistinct("model").alias("forecast_by"))
        .crossJoin(F.broadcast(models))
        .filter(F.col("forecast_by") == F.col("models"))
        .select(*keys)
    )
    known = known.join(common, keys)
    origin_close = known.filter(F.col("model") == "naive").select(
        "symbol", "origin_date", F.col("predicted_close").alias("origin_close")
    ).distinct()
    scored = known.join(origin_close, ["symbol", "origin_date"], "left").withColumn(
        "error", F.col("predicted_close") - F.col("actual_close")
    )
    direction_hit = F.when(F.col("model") != "naive", (F.signum(F.col("predicted_close") - F.col("origin_close"))
                           == F.signum(F.col("actual_close") - F.col("origin_close"))).cast("double"))  # fmt: skip
    per_model = scored.groupBy("model", "horizon").agg(
        F.count("*").alias("n"),
        F.avg(F.abs("error")).alias("mae"),
        F.sqrt(F.avg(F.col("error") * F.col("error"))).alias("rmse"),
        F.avg(F.abs(F.col("error")) / F.abs(F.col("actual_close"))).alias("mape"),
        F.avg(direction_hit).alias("directional_accuracy"),
    )
    naive_mae = per_model.filter(F.col("model") == "naive").select("horizon", F.col("mae").alias("naive_mae"))
    return per_model.join(naive_mae, "horizon", "left").select(
        "model", "horizon", "n", "mae", "rmse", "mape", "directional_accuracy",
        F.when(F.col("naive_mae") > 0, 1.0 - F.col("mae") / F.col("naive_mae")).alias("skill_vs_naive"),
    )  # fmt: skip
