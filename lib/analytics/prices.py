"""Daily prices as traded or adjusted for splits and dividends: the reader without a JVM, and its Spark twin
(its command line is `python -m lib.prices`, lib/prices.py).

For a bar on day d, `split` multiplies open, high, low, close and vwap by S(d), the product of split_from / split_to
over the symbol's splits with ex_date after d, and divides volume by it; `total_return` also multiplies the prices
by the product of 1 - cash_amount / P over the dividends with ex_date after d, P being the as-traded close of the
last bar before the ex-date (per new share when a split shares the ex-date); `as_of` keeps the actions with
ex_date on or before it. Both paths build the same small factor table here (`factor_table`): one definition of the
math, the skipped actions and their warnings. Warnings go to the `lib.prices` logger and, for `read`, to the
frame's `attrs["warnings"]` (a caller that wants them does not have to capture logs).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.core.vocabulary import ADJUSTMENTS
from lib.settings.config import RunConfig
from lib.storage import lake_reader, securities
from lib.storage.catalog import SCHEMAS, pyiceberg_catalog
from lib.storage.lake_reader import scan_symbols, snapshot_of_run

logger = logging.getLogger("lib.prices")  # the name users know the reader by (python -m lib.prices)

COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume", "vwap")  # what `python -m lib.prices` prints
READ_COLUMNS = (*COLUMNS, "security_id")  # what `read` returns: symbol is the ticker traded, security_id the security
# The days a security traded under a ticker: from `from` on (null: since ever), before `until` (null: still held).
SPAN_COLUMNS = ("ticker", "from", "until", "security_id")
PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")
ACTION_COLUMNS = tuple(f.name for f in SCHEMAS["corporate_actions"].fields)
# One row per symbol and ex-date: bars from valid_from (the symbol's previous ex-date; null: since ever) until
# before ex_date take price_factor on their prices and divide their volume by volume_factor.
FACTOR_COLUMNS = ("symbol", "valid_from", "ex_date", "price_factor", "volume_factor")


# --------------------------------------------------------------------------------------------
# The factor math (pandas, small frames): one definition for both paths


def _check_adjust(adjust: str) -> None:
    if adjust not in ADJUSTMENTS:
        raise ConfigError(f"adjust must be one of {list(ADJUSTMENTS)}, got {adjust!r}")


def _empty_actions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in ACTION_COLUMNS})


def _as_dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.date


def _positive(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna() & np.isfinite(numbers) & (numbers > 0)


def _name(row) -> str:
    return f"{row.symbol} {row.action_type} {row.source_id} (ex {row.ex_date})"


def usable_actions(actions: pd.DataFrame, after: dt.date | None = None, as_of: dt.date | None = None):
    """The actions that apply, and a warning for each one left out.

    Keeps splits and dividends with ex_date after `after` (earlier ones change no bar from `after` on) and on or
    before `as_of`. Leaves out what cannot be right: a split whose split_from or split_to is missing, zero or
    negative; a dividend whose cash_amount is missing or not positive; an unknown action_type. The same split or
    dividend (symbol, ex_date and ratio or amount) under two ids is applied once; two splits of one symbol and
    ex-date with different ratios cannot both be right and neither is applied. Returns (actions, warnings).
    """
    warnings: list[str] = []
    if actions.empty:
        return _empty_actions(), warnings
    chosen = actions.loc[:, list(ACTION_COLUMNS)].copy()
    chosen["ex_date"] = _as_dates(chosen["ex_date"])
    if after is not None:
        chosen = chosen[chosen["ex_date"] > after]
    if as_of is not None:
        chosen = chosen[chosen["ex_date"] <= as_of]
    chosen = chosen.sort_values(["symbol", "ex_date", "source_id"]).reset_index(drop=True)

    is_split, is_dividend = chosen["action_type"] == "split", chosen["action_type"] == "dividend"
    for row in chosen[~is_split & ~is_dividend].itertuples():
        warnings.append(f"{_name(row)}: unknown action_type, left out")
    bad_split = is_split & ~(_positive(chosen["split_from"]) & _positive(chosen["split_to"]))
    for row in chosen[bad_split].itertuples():
        warnings.append(f"{_name(row)}: ratio {row.split_from}:{row.split_to} cannot be right, left out")
    bad_dividend = is_dividend & ~_positive(chosen["cash_amount"])
    for row in chosen[bad_dividend].itertuples():
        warnings.append(f"{_name(row)}: cash_amount {row.cash_amount} cannot be right, left out")
    chosen = chosen[(is_split & ~bad_split) | (is_dividend & ~bad_dividend)].copy()

    # The same action under two ids: the ratio (or amount), not how it is written, says it is the same.
    ratio = chosen["split_from"].astype("float64") / chosen["split_to"].astype("float64")
    chosen["_amount"] = ratio.where(chosen["action_type"] == "split", chosen["cash_amount"].astype("float64")).round(12)
    keep = []
    for (symbol, action_type, ex_date, _), same in chosen.groupby(["symbol", "action_type", "ex_date", "_amount"], sort=True):
        keep.append(same.index[0])
        if len(same) > 1:
            ids = ", ".join(same["source_id"].astype(str))
            warnings.append(f"{symbol} {action_type} (ex {ex_date}): the same action under ids {ids}, applied once")
    chosen = chosen.loc[sorted(keep)]
    splits = chosen[chosen["action_type"] == "split"]
    conflicting = splits.groupby(["symbol", "ex_date"])["source_id"].transform("count") > 1
    for (symbol, ex_date), same in splits[conflicting].groupby(["symbol", "ex_date"]):
        ratios = ", ".join(f"{r.split_from:g}:{r.split_to:g} ({r.source_id})" for r in same.itertuples())
        warnings.append(f"{symbol} split (ex {ex_date}): ratios {ratios} disagree, none applied")
    chosen = chosen.drop(index=splits[conflicting].index).drop(columns="_amount")
    return chosen.reset_index(drop=True), warnings


def _previous_closes(dividends: pd.DataFrame, bars: pd.DataFrame) -> pd.Series:
    """For each dividend (symbol, ex_date), the close of the symbol's last bar with a close before the ex-date."""
    left = dividends.assign(_at=pd.to_datetime(dividends["ex_date"]), _order=np.arange(len(dividends)))
    right = bars.loc[bars["close"].notna(), ["symbol", "date", "close"]].rename(columns={"close": "_previous_close"})
    right = right.assign(_at=pd.to_datetime(right["date"])).drop(columns="date")
    # merge_asof wants one dtype for `by` on both sides.
    left["symbol"], right["symbol"] = left["symbol"].astype(str), right["symbol"].astype(str)
    merged = pd.merge_asof(
        left.sort_values("_at"), right.sort_values("_at"), on="_at", by="symbol", direction="backward",
        allow_exact_matches=False,
    )  # fmt: skip
    return merged.sort_values("_order")["_previous_close"].reset_index(drop=True)


def factor_table(actions: pd.DataFrame, bars: pd.DataFrame, adjust: str) -> tuple[pd.DataFrame, list[str]]:
    """FACTOR_COLUMNS rows from `usable_actions` output: the cumulative factors between a symbol's ex-dates.

    `bars` (symbol, date, close, as traded) supplies P for dividends, under `total_return` only: it must hold the
    symbol's last bar before each ex-date whose dividend should apply. A dividend with no such bar changes no
    bar of `bars` and is skipped silently; one of cash_amount >= P (per new share) is left out with a warning.
    Returns (factors, warnings).
    """
    _check_adjust(adjust)
    warnings: list[str] = []
    if adjust == "raw" or actions.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FACTOR_COLUMNS}), warnings
    splits = actions[actions["action_type"] == "split"]
    split_ratio = (splits["split_from"].astype("float64") / splits["split_to"].astype("float64")).rename("factor")
    split_steps = pd.concat([splits[["symbol", "ex_date"]], split_ratio], axis=1).groupby(["symbol", "ex_date"]).prod()
    steps = split_steps.assign(volume_factor=split_steps["factor"]).rename(columns={"factor": "price_factor"}).reset_index()

    dividends = actions[actions["action_type"] == "dividend"].reset_index(drop=True)
    if adjust == "total_return" and not dividends.empty:
        previous_close = _previous_closes(dividends, bars)
        same_day_split = dividends.join(split_steps, on=["symbol", "ex_date"])["factor"].fillna(1.0)
        per_new_share = previous_close * same_day_split  # the dividend is per new share
        cash = dividends["cash_amount"].astype("float64")
        reached = previous_close.notna()
        impossible = reached & (cash >= per_new_share)
        for row, price in zip(dividends[impossible].itertuples(), per_new_share[impossible], strict=True):
            warnings.append(f"{_name(row)}: cash_amount {row.cash_amount:g} >= previous close {price:g}, left out")
        applied = reached & ~impossible
        dividend_steps = dividends.loc[applied, ["symbol", "ex_date"]].assign(
            price_factor=(1.0 - cash / per_new_share)[applied], volume_factor=1.0
        )
        steps = pd.concat([steps, dividend_steps], ignore_index=True)
    if steps.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FACTOR_COLUMNS}), warnings

    by_date = steps.groupby(["symbol", "ex_date"], as_index=False)[["price_factor", "volume_factor"]].prod()
    # A bar before ex-date e takes every step from e on: products from the latest ex-date backwards.
    latest_first = by_date.sort_values(["symbol", "ex_date"], ascending=[True, False])
    cumulative = latest_first.groupby("symbol")[["price_factor", "volume_factor"]].cumprod()
    factors = latest_first[["symbol", "ex_date"]].join(cumulative).sort_values(["symbol", "ex_date"])
    factors["valid_from"] = factors.groupby("symbol")["ex_date"].shift(1)
    return factors.loc[:, list(FACTOR_COLUMNS)].reset_index(drop=True), warnings


def adjust_daily(daily: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """`daily` (symbol, date, prices, volume, ...) with each bar's factor applied: the bar before ex-date e takes
    the factors of e; a bar on or after a symbol's last ex-date is unchanged. A new frame; columns kept."""
    adjusted = daily.copy()
    if daily.empty or factors.empty:
        return adjusted
    left = adjusted.assign(_at=pd.to_datetime(adjusted["date"]), _order=np.arange(len(adjusted)))
    right = factors[["symbol", "ex_date", "price_factor", "volume_factor"]].assign(_at=pd.to_datetime(factors["ex_date"]))
    left["symbol"], right["symbol"] = left["symbol"].astype(str), right["symbol"].astype(str)
    matched = pd.merge_asof(
        left.sort_values("_at"), right.drop(columns="ex_date").sort_values("_at"), on="_at", by="symbol",
        direction="forward", allow_exact_matches=False,
    ).sort_values("_order")  # fmt: skip
    price_factor = matched["price_factor"].fillna(1.0).to_numpy()
    volume_factor = matched["volume_factor"].fillna(1.0).to_numpy()
    for column in PRICE_COLUMNS:
        adjusted[column] = adjusted[column].astype("float64") * price_factor
    adjusted["volume"] = adjusted["volume"].astype("float64") / volume_factor
    return adjusted


def _report(warnings: list[str]) -> None:
    for warning in warnings:
        logger.warning(warning)


# --------------------------------------------------------------------------------------------
# The reader without a JVM: pyiceberg for a few symbols


def read_actions(config: RunConfig, symbols: Sequence[str], as_of_run: dt.date | None = None) -> pd.DataFrame:
    """The corporate_actions rows of `symbols` through pyiceberg (as the run of `as_of_run` published them, when
    given); none when the table does not exist yet."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        table = pyiceberg_catalog(config).load_table(f"{config.namespace}.corporate_actions")
    except (NoSuchTableError, NoSuchNamespaceError):
        return _empty_actions()
    snapshot = snapshot_of_run(table, as_of_run)
    actions = scan_symbols(table, symbols, ACTION_COLUMNS, snapshot).to_pandas()
    return actions if not actions.empty else _empty_actions()


def _check_local_catalog(config: RunConfig) -> None:
    # pyiceberg's SqlCatalog would create an empty catalog.db where there is none: say so instead.
    if config.env == "local" and "://" not in str(config.warehouse):
        catalog_file = Path(config.warehouse) / "catalog.db"
        if not catalog_file.is_file():
            raise ConfigError(
                f"no Iceberg catalog at {catalog_file}: point -p warehouse at a warehouse folder that "
                "02_monthly_rollup has written (it holds catalog.db)"
            )


def resolve_tickers(periods: list[dict], tickers: Sequence[str], start: dt.date, end: dt.date) -> tuple[dict, pd.DataFrame]:
    """Each of `tickers` to the security a read of it over start..end means (lib.storage.securities.holder), and the
    days each of those securities traded under each of its tickers.

    Returns ({ticker: security_id}, spans): spans has the columns ticker, from, until (from on, before until; null:
    open), security_id, one row per interval of a resolved security. A ticker the periods never had stands for
    itself alone (security_id the ticker, every day), as the bars of a ticker the reference data never listed are
    identified; so does every ticker when the warehouse has no securities table (`periods` empty).
    """
    every_interval = securities.intervals(periods)
    security_of = securities.resolve(periods, tickers, start, end)
    known = {security_id for *_, security_id in every_interval}
    rows = [row for row in every_interval if row[3] in set(security_of.values())]
    rows += [(ticker, None, None, ticker) for ticker, security_id in security_of.items() if security_id not in known]
    spans = pd.DataFrame(sorted(set(rows), key=lambda r: (r[3], r[2] or dt.date.max, r[0])), columns=list(SPAN_COLUMNS))
    return security_of, spans


def of_securities(frame: pd.DataFrame, spans: pd.DataFrame, day_column: str = "date") -> pd.DataFrame:
    """The rows of `frame` (symbol, `day_column`, ...) that fall in an interval of `spans` (resolve_tickers), with
    that interval's security_id: a bar (or an action, by its ex-date) under ticker t on day d belongs to the security
    that held t on d, so a reused ticker's rows of the other company are left out. A new frame, in frame's order."""
    if frame.empty:
        return frame.assign(security_id=pd.Series(dtype="object"))
    days = pd.to_datetime(frame[day_column]).dt.date
    merged = frame.drop(columns=["security_id"], errors="ignore").assign(_day=days.to_numpy(), _order=np.arange(len(frame)))
    merged = merged.merge(spans, left_on="symbol", right_on="ticker", how="inner")
    after_from = merged["from"].isna() | (merged["_day"] >= merged["from"].fillna(dt.date.min))
    before_until = merged["until"].isna() | (merged["_day"] < merged["until"].fillna(dt.date.max))
    inside = merged[after_from & before_until].sort_values("_order")
    return inside.drop(columns=["_day", "_order", "ticker", "from", "until"]).reset_index(drop=True)


def ticker_changes(spans: pd.DataFrame, start: dt.date, end: dt.date) -> list[tuple[str, str, str, dt.date]]:
    """(security_id, old ticker, new ticker, day) for each change of ticker of the securities of `spans` on a day of
    start..end: a security's intervals in order, where one ends and the next begins under another ticker."""
    changes = []
    for security_id, mine in spans.groupby("security_id", sort=True):
        ordered = [
            (ticker, None if pd.isna(until) else until) for ticker, until in zip(mine["ticker"], mine["until"], strict=True)
        ]
        ordered.sort(key=lambda held: held[1] or dt.date.max)
        for (old, day), (new, _) in zip(ordered, ordered[1:], strict=False):
            if day is not None and old != new and start <= day <= end:
                changes.append((security_id, old, new, day))
    return sorted(changes, key=lambda c: (c[3], c[1]))


def _by_security(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` keyed by security: the factor math groups by `symbol`, so a split under the new ticker reaches the
    bars traded under the old one."""
    return frame.assign(symbol=frame["security_id"])


def read(
    config: RunConfig,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    adjust: str = "split",
    as_of: dt.date | None = None,
    as_of_run: dt.date | None = None,
) -> pd.DataFrame:
    """READ_COLUMNS of the securities `symbols` name over start..end, one row per security and day with a bar.

    Each ticker resolves to a security through the securities table (`resolve_tickers`; without the table, the ticker
    alone), and the frame holds that security's whole history in the span under whatever tickers it traded: `symbol`
    is the ticker as traded that day, `security_id` the security. Rows come by security, in the order of the (sorted)
    tickers asked for, then by date; two tickers of one security give its rows once. Corporate actions apply per
    security (an action is keyed by the ticker on its ex-date): a split under the new ticker adjusts the bars traded
    under the old one. attrs["securities"] maps each ticker asked for to its security_id; attrs["ticker_changes"]
    lists (security_id, old, new, day) for the changes within the span; attrs["spans"] the securities' intervals
    (SPAN_COLUMNS tuples), for a caller that reads more of their rows (the dashboard: indicators, anomalies).

    `as_of_run` reads the tables as the run of that ds published them (its run-<ds> tag, lib.wap): what that run's
    04_trends saw, whatever later runs corrected.

    Reads the monthly arrays (lib.storage.lake_reader), which stay keyed by the ticker traded, of every ticker the
    securities held, and corporate_actions through pyiceberg. Under `total_return` the arrays are read on past `end` to
    the last relevant ex-date, for the closes before it. The warnings about the actions left out, and one per symbol
    without a bar in the span (naming it, and whether the warehouse has the symbol at all), are logged and kept in the
    frame's attrs["warnings"]; attrs["unknown_symbols"] lists the symbols the warehouse has no prices of on any day.
    """
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    _check_adjust(adjust)
    if start > end:
        raise ConfigError(f"start ({start}) is after end ({end}): start must be on or before end")
    symbols = sorted({str(s).strip().upper() for s in symbols if str(s).strip()})
    if not symbols:
        raise ConfigError("name at least one symbol, e.g. MSFT")
    _check_local_catalog(config)
    security_of, spans = resolve_tickers(lake_reader.read_securities(config, as_of_run) or [], symbols, start, end)
    tickers = sorted(set(spans["ticker"]))
    actions = _empty_actions() if adjust == "raw" else read_actions(config, tickers, as_of_run)
    usable, warnings = usable_actions(of_securities(actions, spans, "ex_date"), after=start, as_of=as_of)
    usable = of_securities(usable, spans, "ex_date")
    read_end = end
    dividend_dates = usable.loc[usable["action_type"] == "dividend", "ex_date"]
    if adjust == "total_return" and not dividend_dates.empty:
        read_end = max(end, max(dividend_dates) - dt.timedelta(days=1))
    try:
        daily = of_securities(lake_reader.read_daily(config, tickers, start, read_end, as_of_run=as_of_run), spans)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise ConfigError(
            f"no table {config.namespace}.monthly_stock_prices in the warehouse {config.warehouse}: "
            "run 01_ingest then 02_monthly_rollup, or point -p warehouse / -p namespace at one that has it"
        ) from exc
    factors, more = factor_table(_by_security(usable), _by_security(daily), adjust)
    warnings += more
    adjusted = adjust_daily(_by_security(daily), factors).assign(symbol=daily["symbol"])
    in_range = adjusted[(adjusted["date"] >= start) & (adjusted["date"] <= end)]
    rank = {}
    for ticker in symbols:
        rank.setdefault(security_of[ticker], len(rank))
    result = in_range.assign(_rank=in_range["security_id"].map(rank)).sort_values(["_rank", "date"])
    result = result.loc[:, list(READ_COLUMNS)].reset_index(drop=True)
    with_bars = set(result["security_id"])
    without_bars = [s for s in symbols if security_of[s] not in with_bars]
    tickers_of = spans.groupby("security_id")["ticker"].agg(list)
    asked = sorted({t for s in without_bars for t in tickers_of[security_of[s]]})
    unpriced = set(_symbols_without_prices(config, asked, as_of_run))
    unknown = [s for s in without_bars if unpriced.issuperset(tickers_of[security_of[s]])]
    where = f"{config.namespace}.monthly_stock_prices of the warehouse {config.warehouse}"
    for symbol in without_bars:
        if symbol in unknown:
            warnings.append(f"{symbol}: no prices on any day in {where}: check the ticker")
        else:
            warnings.append(f"{symbol}: no bar from {start} to {end} (its prices lie outside that span): widen the span")
    _report(warnings)
    result.attrs["warnings"] = warnings
    result.attrs["unknown_symbols"] = unknown
    result.attrs["securities"] = security_of
    result.attrs["ticker_changes"] = ticker_changes(spans, start, end)
    result.attrs["spans"] = list(spans.itertuples(index=False, name=None))  # SPAN_COLUMNS tuples (attrs stay plain)
    return result


def _symbols_without_prices(config: RunConfig, symbols: list[str], as_of_run: dt.date | None) -> list[str]:
    """Those of `symbols` that monthly_stock_prices holds no row of, on any day (read only when some are asked)."""
    if not symbols:
        return []
    table = pyiceberg_catalog(config).load_table(f"{config.namespace}.monthly_stock_prices")
    present = scan_symbols(table, symbols, ("symbol",), snapshot_of_run(table, as_of_run))
    found = set(present.column("symbol").to_pylist())
    return [s for s in symbols if s not in found]


# --------------------------------------------------------------------------------------------
# The Spark path, for big reads


def _factor_frame(spark, factors: pd.DataFrame):
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("symbol", T.StringType()),
            T.StructField("valid_from", T.DateType()),
            T.StructField("ex_date", T.DateType()),
            T.StructField("price_factor", T.DoubleType()),
            T.StructField("volume_factor", T.DoubleType()),
        ]
    )
    rows = [
        (r.symbol, None if pd.isna(r.valid_from) else r.valid_from, r.ex_date, float(r.price_factor), float(r.volume_factor))
        for r in factors.itertuples()
    ]
    return spark.createDataFrame(rows, schema)


def _in_interval(daily, table):
    """Join condition: the bar lies from the interval's valid_from (null: since ever) until before its ex_date."""
    return (
        (daily["symbol"] == table["symbol"])
        & (table["valid_from"].isNull() | (daily["date"] >= table["valid_from"]))
        & (daily["date"] < table["ex_date"])
    )


def _closes_before_dividends(daily, dividends: pd.DataFrame) -> pd.DataFrame:
    """The last bar with a close (symbol, date, close) before each ex-date interval of `dividends`: every bar
    falls into at most one interval of its symbol, so the join adds no rows; the few results come back."""
    from pyspark.sql import functions as F

    spark = daily.sparkSession
    ex_dates = dividends[["symbol", "ex_date"]].drop_duplicates().sort_values(["symbol", "ex_date"])
    ex_dates = ex_dates.assign(valid_from=ex_dates.groupby("symbol")["ex_date"].shift(1), price_factor=1.0, volume_factor=1.0)
    intervals = F.broadcast(_factor_frame(spark, ex_dates.loc[:, list(FACTOR_COLUMNS)]))
    bars = daily.filter(F.col("close").isNotNull()).select("symbol", "date", "close")
    last_bars = (
        bars.join(intervals, _in_interval(bars, intervals))
        .groupBy(bars["symbol"], intervals["ex_date"])
        .agg(F.max("date").alias("date"), F.max_by("close", "date").alias("close"))
        .select("symbol", "date", "close")
        .toPandas()
    )
    return last_bars


def adjust_frame(daily, actions, adjust: str = "split", as_of: dt.date | None = None, key: str = "symbol"):
    """`daily` (the stock_prices columns, as traded) adjusted as `read` does, for big reads: a Spark DataFrame.

    `actions` is a corporate-actions DataFrame (the table's columns; a small table, collected to the driver).
    Under `total_return`, P comes from `daily` itself: it must reach back to the last bar before each ex-date
    whose dividend should apply. The factors go out as one small broadcast table of intervals between ex-dates;
    each bar meets its interval by a join on symbol and date range and takes built-in arithmetic, no Python UDF.
    Returns daily's columns, prices multiplied and volume divided; warnings go to the `lib.prices` logger.

    `key`: the column an action applies by. "symbol": to the bars of its ticker. "security_id" (which `daily` and
    `actions` must both have; an action's being the security that held its ticker on the ex-date): to every bar of
    its security, under whatever ticker it traded, and never to another security's bars under the same ticker. The
    factor math then runs with security_id in the place of the symbol (the warnings name the security).
    """
    from pyspark.sql import functions as F

    _check_adjust(adjust)
    if adjust == "raw":
        return daily
    if key != "symbol":
        keyed = daily.withColumnRenamed("symbol", "_traded_symbol").withColumnRenamed(key, "symbol")
        keyed_actions = actions.drop("symbol").withColumnRenamed(key, "symbol")
        adjusted = adjust_frame(keyed, keyed_actions, adjust, as_of)
        return adjusted.withColumnRenamed("symbol", key).withColumnRenamed("_traded_symbol", "symbol").select(*daily.columns)
    usable, warnings = usable_actions(actions.select(*ACTION_COLUMNS).toPandas(), as_of=as_of)
    dividends = usable[usable["action_type"] == "dividend"]
    bars = _closes_before_dividends(daily, dividends) if adjust == "total_return" and not dividends.empty else None
    factors, more = factor_table(usable, bars if bars is not None else pd.DataFrame(columns=["symbol", "date", "close"]), adjust)
    _report(warnings + more)
    if factors.empty:
        return daily
    table = F.broadcast(_factor_frame(daily.sparkSession, factors))
    joined = daily.join(table, _in_interval(daily, table), "left")
    price_factor = F.coalesce(table["price_factor"], F.lit(1.0))
    volume_factor = F.coalesce(table["volume_factor"], F.lit(1.0))
    adjusted = {column: daily[column] * price_factor for column in PRICE_COLUMNS}
    adjusted["volume"] = daily["volume"] / volume_factor
    return joined.select(*[adjusted[c].alias(c) if c in adjusted else daily[c] for c in daily.columns])
