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


def _training_samples(bars: DataFrame, horizon_days: int, cutoff: dt.date) -> DataFrame:
    """Samples (features at s, label = mean daily log return from s to s + h bars) with the target on or before cutoff."""
    by_date = Window.partitionBy(series_key(bars)).orderBy("date")
    start = cutoff - dt.timedelta(days=365 * TRAINING_YEARS)
    samples = []
    for h in range(1, horizon_days + 1):
        labelled = bars.select(
            "*",
            F.lit(h).alias("horizon"),
            F.lead("date", h).over(by_date).alias("target_date"),
            ((F.log(F.lead("close", h).over(by_date)) - F.log("close")) / h).alias("label"),
        )
        samples.append(labelled.filter((F.col("target_date") <= F.lit(cutoff)) & (F.col("date") >= F.lit(start))))
    result = samples[0]
    for more in samples[1:]:
        result = result.unionByName(more)
    return result.dropna(subset=[*FEATURES, "label"])


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
    """
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

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

    assembler = VectorAssembler(inputCols=list(FEATURES), outputCol="features")
    linear_parts = []
    for cutoff in sorted({model_cutoff(origin) for origin in origins}):
        learners = bars if trainers is None else bars.filter(F.col(key).isin(list(trainers.get(cutoff, ()))))
        training = _training_samples(learners, horizon_days, cutoff)
        if training.limit(2).count() < 2:
            continue
        # The normal-equation solver is deterministic: the same samples give the same coefficients.
        model = LinearRegression(featuresCol="features", labelCol="label", regParam=REG_PARAM, solver="normal").fit(
            assembler.transform(training)
        )
        month = grid.filter(F.last_day("origin_date") == F.last_day(F.lit(cutoff + dt.timedelta(days=1))))
        scored = model.transform(assembler.transform(month.dropna(subset=list(FEATURES))))
        linear_parts.append(scored.select(
            "symbol", F.lit("linear").alias("model"), "origin_date", "target_date", "horizon",
            (F.col("close") * F.exp(F.col("prediction") * F.col("horizon"))).alias("predicted_close"), *names[1:],
        ))  # fmt: skip
    result = naive.unionByName(drift)
    for part in linear_parts:
        result = result.unionByName(part)
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
