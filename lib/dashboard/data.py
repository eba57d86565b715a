"""What the dashboard shows, read from the lake without a JVM: small pandas frames through pyiceberg and lib.prices.

`Lake` answers for one warehouse: the universe and the span of data (cached until monthly_stock_prices gains a
snapshot), and `Lake.view(request)` gathers one symbol's prices, indicators, anomalies, actions, trend numbers,
quality checks and missing days. Tables that are missing or empty are left out with a note, never an exception.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lib.analytics import prices
from lib.core.errors import ConfigError, WorkspaceError
from lib.core.trading_days import FIRST_SESSION, trading_days
from lib.core.vocabulary import ADJUSTMENTS
from lib.settings.config import RunConfig, parse_ds
from lib.storage.catalog import pyiceberg_catalog
from lib.storage.lake_reader import read_securities

UNIVERSE_RECHECK_S = 5.0  # a new run's symbols and days show within this many seconds
DEFAULT_SPAN_DAYS = 182  # the last ~6 months of data
MOVING_AVERAGES = (20, 50)
# Calendar days read before `start` so that the moving averages are whole from the first day shown.
WARMUP_DAYS = 80
INDICATOR_COLUMNS = ("rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14", "obv")
ACTION_COLUMNS = ("action_type", "ex_date", "split_from", "split_to", "cash_amount", "currency", "pay_date", "source_id")
TREND_COLUMNS = ("ds", "adjust", "start_date", "end_date", "bars", "first_close", "last_close", "total_return",
                 "annualized_volatility", "max_drawdown")  # fmt: skip
QUALITY_COLUMNS = ("ds", "table_name", "check_name", "severity", "status", "failed_rows", "details")


class WarehouseMissingError(WorkspaceError):
    """The warehouse has no catalog, or no monthly prices yet: nothing to show before `make run`."""


class BadRequestError(WorkspaceError):
    """A URL parameter is refused: the message names the parameter, what was expected and what came."""


@dataclasses.dataclass(frozen=True)
class Universe:
    """The symbols to pick from and the span of data, as of one snapshot of monthly_stock_prices."""

    symbols: pd.DataFrame  # ticker, name: the latest stock_tickers run, else the symbols with prices
    first_date: dt.date
    last_date: dt.date  # the latest from_date: the last trading day applied
    default_symbol: str  # the most traded symbol of the latest month (by volume), else the first
    snapshot_id: int | None
    held_tickers: frozenset[str] = frozenset()  # every ticker of the securities table: an old one finds its security

    def knows(self, symbol: str) -> bool:
        return symbol in set(self.symbols["ticker"]) or symbol in self.held_tickers


@dataclasses.dataclass(frozen=True)
class ViewRequest:
    """The page's URL state, validated: one symbol, a span and the adjustment."""

    symbol: str
    start: dt.date
    end: dt.date
    adjust: str


@dataclasses.dataclass
class View:
    """One symbol over one span: every frame small, every table that could not be read named in `notes`."""

    request: ViewRequest
    bars: pd.DataFrame  # lib.prices.COLUMNS plus ma_20, ma_50, in the span
    indicators: pd.DataFrame  # symbol, date, INDICATOR_COLUMNS (empty: none)
    anomalies: pd.DataFrame  # date, kind, value, score, threshold
    actions: pd.DataFrame  # ACTION_COLUMNS with ex_date in the span
    trend: pd.DataFrame  # the symbol's latest trend_summary row(s), TREND_COLUMNS
    quality: pd.DataFrame  # the latest ds of quality_results, QUALITY_COLUMNS
    missing_days: list[dt.date]  # trading days of the span (within the data) with no bar of the symbol
    notes: list[str]
    ticker_changes: list[tuple[str, str, dt.date]] = dataclasses.field(default_factory=list)  # (old, new, day) in the span

    @property
    def last_close(self) -> float | None:
        closes = self.bars["close"].dropna()
        return float(closes.iloc[-1]) if not closes.empty else None


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.date


class Lake:
    """Read access to one warehouse for the dashboard; safe to share between request threads."""

    def __init__(self, config: RunConfig):
        self.config = config
        self._lock = threading.Lock()
        self._universe: Universe | None = None
        self._universe_checked = 0.0  # time.monotonic() of the last look at monthly_stock_prices' snapshot
        self._sql_catalog = None

    # -- tables ------------------------------------------------------------------------------

    def _catalog(self):
        if self.config.env == "local" and "://" not in str(self.config.warehouse):
            catalog_file = Path(self.config.warehouse) / "catalog.db"
            if not catalog_file.is_file():
                raise WarehouseMissingError(
                    f"no warehouse at {Path(self.config.warehouse).resolve()} (no catalog.db): run `make run` first, "
                    "or start the dashboard with -p warehouse <folder> pointing at one"
                )
        with self._lock:
            if self._sql_catalog is None:
                self._sql_catalog = pyiceberg_catalog(self.config)
            return self._sql_catalog

    def _table(self, catalog, name: str):
        """The table, or None when it does not exist (yet)."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            return catalog.load_table(f"{self.config.namespace}.{name}")
        except (NoSuchTableError, NoSuchNamespaceError):
            return None

    def _scan(self, catalog, name: str, notes: list[str], row_filter=None, fields=None) -> pd.DataFrame | None:
        """Rows of an optional table; None, with a note, when it is missing or cannot be read."""
        table = self._table(catalog, name)
        if table is None:
            notes.append(f"{name}: no such table in this warehouse yet")
            return None
        try:
            scan = table.scan(**({"row_filter": row_filter} if row_filter is not None else {}),
                              **({"selected_fields": tuple(fields)} if fields else {}))  # fmt: skip
            return scan.to_pandas()
        except Exception as exc:  # a table another version wrote differently: show the rest of the page
            notes.append(f"{name}: could not be read ({type(exc).__name__}: {exc})")
            return None

    # -- the universe ------------------------------------------------------------------------

    def universe(self) -> Universe:
        """The cached Universe, rebuilt when monthly_stock_prices has a new snapshot (looked at every few seconds)."""
        with self._lock:
            if self._universe is not None and time.monotonic() - self._universe_checked < UNIVERSE_RECHECK_S:
                return self._universe
        catalog = self._catalog()
        monthly = self._table(catalog, "monthly_stock_prices")
        snapshot = monthly.current_snapshot() if monthly is not None else None
        if snapshot is None:
            raise WarehouseMissingError(
                f"the warehouse {Path(self.config.warehouse).resolve()} has no daily prices yet "
                "(monthly_stock_prices is missing or empty): run `make run` first"
            )
        with self._lock:
            if self._universe is not None and self._universe.snapshot_id == snapshot.snapshot_id:
                self._universe_checked = time.monotonic()
                return self._universe
        universe = self._build_universe(catalog, monthly, snapshot.snapshot_id)
        with self._lock:
            self._universe, self._universe_checked = universe, time.monotonic()
        return universe

    def _build_universe(self, catalog, monthly, snapshot_id: int) -> Universe:
        from pyiceberg.expressions import EqualTo

        closes = monthly.scan(
            row_filter=EqualTo("metric_name", "close"), selected_fields=("symbol", "month_start", "from_date")
        ).to_pandas()
        if closes.empty:
            raise WarehouseMissingError("monthly_stock_prices holds no prices yet: run `make run` first")
        latest_month, first_month = closes["month_start"].max(), closes["month_start"].min()
        last_date = closes["from_date"].max()
        first_date = _first_day_with_a_close(monthly, first_month)
        volumes = monthly.scan(
            row_filter=EqualTo("metric_name", "volume") & EqualTo("month_start", latest_month.isoformat()),
            selected_fields=("symbol", "metric_array"),
        ).to_pandas()
        traded = {row.symbol: np.nansum(np.asarray(row.metric_array, dtype="float64")) for row in volumes.itertuples()}
        priced = sorted(closes["symbol"].unique())
        default_symbol = max(traded, key=lambda s: (traded[s], s)) if traded else priced[0]

        notes: list[str] = []
        tickers = self._scan(catalog, "stock_tickers", notes, fields=("ticker", "name", "ds"))
        if tickers is not None and not tickers.empty:
            latest = tickers[tickers["ds"] == tickers["ds"].max()]
            names = latest.drop_duplicates("ticker").set_index("ticker")["name"]
        else:
            names = pd.Series(dtype="object")
        # Every symbol with prices can be opened; its name comes from stock_tickers when it has one.
        symbols = pd.DataFrame({"ticker": sorted(set(priced) | set(names.index))})
        symbols["name"] = symbols["ticker"].map(names).fillna("")
        held = frozenset(period["ticker"] for period in read_securities(self.config) or [])
        return Universe(
            symbols=symbols, first_date=_as_date(first_date), last_date=_as_date(last_date),
            default_symbol=default_symbol, snapshot_id=snapshot_id, held_tickers=held,
        )  # fmt: skip

    # -- the URL state -----------------------------------------------------------------------

    def request(self, query: dict[str, str]) -> ViewRequest:
        """The ViewRequest of `?symbol=&start=&end=&adjust=`, defaults filled in; BadRequestError when refused."""
        universe = self.universe()
        symbol = (query.get("symbol") or "").strip().upper() or universe.default_symbol
        if not universe.knows(symbol):
            raise BadRequestError(
                f"unknown symbol {symbol!r}: pick one of the {len(universe.symbols)} symbols of this warehouse "
                f"(e.g. {universe.default_symbol})"
            )
        end = _date_parameter(query, "end", universe.last_date)
        # The ~6 months before `end`, not before the data begins (nor after `end`).
        default_start = max(min(universe.first_date, end), end - dt.timedelta(days=DEFAULT_SPAN_DAYS))
        start = _date_parameter(query, "start", default_start)
        if start > end:
            raise BadRequestError(f"start ({start}) is after end ({end}): start must be on or before end")
        adjust = (query.get("adjust") or "split").strip()
        if adjust not in ADJUSTMENTS:
            raise BadRequestError(f"adjust must be one of {', '.join(ADJUSTMENTS)}, got {adjust!r}")
        return ViewRequest(symbol=symbol, start=start, end=end, adjust=adjust)

    # -- one view ----------------------------------------------------------------------------

    def view(self, request: ViewRequest) -> View:
        """Everything the page shows for `request`, read now: the security the symbol names over the span (lib.prices
        resolves it), under every ticker it traded, its changes of ticker marked."""
        from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, In, LessThanOrEqual

        universe = self.universe()
        catalog = self._catalog()
        notes: list[str] = []
        symbol, start, end = request.symbol, request.start, request.end
        try:
            history = prices.read(self.config, [symbol], start - dt.timedelta(days=WARMUP_DAYS), end, adjust=request.adjust)
        except ConfigError as exc:
            raise BadRequestError(str(exc)) from exc
        notes += [f"prices: {w}" for w in history.attrs.get("warnings", [])]
        bars = with_moving_averages(history)
        bars = bars[(bars["date"] >= start) & (bars["date"] <= end)].reset_index(drop=True)
        # The security's tickers and the days each was its own: its rows of the other tables are theirs on those days.
        spans = pd.DataFrame(history.attrs["spans"], columns=list(prices.SPAN_COLUMNS))
        tickers = sorted(set(spans["ticker"]))
        changes = [(old, new, day) for _, old, new, day in history.attrs["ticker_changes"] if start < day <= end]

        in_span = And(GreaterThanOrEqual("date", start.isoformat()), LessThanOrEqual("date", end.isoformat()))
        indicators = self._scan(catalog, "technical_indicators", notes, And(In("symbol", tickers), in_span))
        if indicators is None or indicators.empty:
            indicators = _empty(("symbol", "date", *INDICATOR_COLUMNS))
        else:
            indicators = prices.of_securities(indicators, spans).drop(columns="security_id")
        indicators = indicators.sort_values("date").reset_index(drop=True)

        anomalies = self._scan(catalog, "anomalies", notes, And(In("symbol", tickers), in_span))
        if anomalies is not None and not anomalies.empty:
            anomalies = prices.of_securities(anomalies, spans)
        if anomalies is None or anomalies.empty:
            anomalies = _empty(("date", "kind", "value", "score", "threshold"))
        else:  # a flag as the latest run saw it
            anomalies = anomalies.sort_values("ds").drop_duplicates(["date", "kind"], keep="last").sort_values("date")
            anomalies = anomalies.loc[:, ["date", "kind", "value", "score", "threshold"]].reset_index(drop=True)

        actions = self._actions(catalog, spans, start, end, notes)
        trend = self._scan(catalog, "trend_summary", notes, EqualTo("symbol", symbol))
        if trend is None or trend.empty:
            trend = _empty(TREND_COLUMNS)
        else:
            trend = trend[trend["ds"] == trend["ds"].max()].loc[:, list(TREND_COLUMNS)].reset_index(drop=True)

        quality = self._scan(catalog, "quality_results", notes)
        if quality is None or quality.empty:
            quality = _empty(QUALITY_COLUMNS)
        else:
            quality = quality[quality["ds"] == quality["ds"].max()]
            quality = quality.sort_values(["table_name", "check_name"]).loc[:, list(QUALITY_COLUMNS)].reset_index(drop=True)

        missing = missing_days(bars, max(start, universe.first_date), min(end, universe.last_date))
        return View(request, bars, indicators, anomalies, actions, trend, quality, missing, notes, changes)

    def _actions(self, catalog, spans: pd.DataFrame, start: dt.date, end: dt.date, notes: list[str]) -> pd.DataFrame:
        """The security's actions with ex_date in the span: those of its tickers on the days they were its own."""
        from pyiceberg.expressions import In

        actions = self._scan(catalog, "corporate_actions", notes, In("symbol", sorted(set(spans["ticker"]))))
        if actions is None or actions.empty:
            return _empty(ACTION_COLUMNS)
        actions = prices.of_securities(actions.assign(ex_date=_dates(actions["ex_date"])), spans, "ex_date")
        actions = actions[(actions["ex_date"] >= start) & (actions["ex_date"] <= end)]
        return actions.sort_values(["ex_date", "source_id"]).loc[:, list(ACTION_COLUMNS)].reset_index(drop=True)


def _first_day_with_a_close(monthly, month) -> dt.date:
    """The first day of `month` on which some symbol has a close: where the data begins (runs start mid-month)."""
    from pyiceberg.expressions import EqualTo

    arrays = monthly.scan(
        row_filter=EqualTo("metric_name", "close") & EqualTo("month_start", month.isoformat()), selected_fields=("metric_array",)
    ).to_pandas()["metric_array"]
    offsets = [int(np.flatnonzero(~np.isnan(np.asarray(a, dtype="float64")))[0]) for a in arrays if a is not None and
               np.isfinite(np.asarray(a, dtype="float64")).any()]  # fmt: skip
    return _as_date(month) + dt.timedelta(days=min(offsets) if offsets else 0)


def _as_date(value) -> dt.date:
    return pd.Timestamp(value).date()


@functools.lru_cache(maxsize=1)
def supported_dates() -> tuple[dt.date, dt.date]:
    """The days a view may start or end on: the NYSE calendar the workspace knows (its first session, 2000-01-03,
    to its last, about a year ahead). Outside it there are no trading days to show, and the page's own arithmetic
    (the warm-up read before `start`, the default span before `end`) would leave the range of dates."""
    return FIRST_SESSION, trading_days(FIRST_SESSION, dt.date.max)[-1]


def _date_parameter(query: dict[str, str], name: str, default: dt.date) -> dt.date:
    text = (query.get(name) or "").strip()
    if not text:
        return default
    shown = text if len(text) <= 40 else text[:40] + "…"
    try:
        day = parse_ds(text, name)
    except ConfigError as exc:
        raise BadRequestError(f"{name} must be a date YYYY-MM-DD, got {shown!r}") from exc
    first, last = supported_dates()
    if not first <= day <= last:
        raise BadRequestError(
            f"{name} must be a day from {first} to {last} (the NYSE calendar this dashboard knows), got {shown!r}: "
            "pick a day in that range"
        )
    return day


def with_moving_averages(bars: pd.DataFrame, windows=MOVING_AVERAGES) -> pd.DataFrame:
    """`bars` (symbol, date, close; one symbol, ordered by date) plus ma_<n>: the mean close of the last n bars
    (null until n bars are there). A new frame."""
    result = bars.copy()
    closes = result["close"].astype("float64")
    for window in windows:
        result[f"ma_{window}"] = closes.rolling(window, min_periods=window).mean()
    return result


def missing_days(bars: pd.DataFrame, start: dt.date, end: dt.date) -> list[dt.date]:
    """The NYSE trading days of start..end on which `bars` (a `date` column) has no bar with a close."""
    if start > end:
        return []
    present = set(bars.loc[bars["close"].notna(), "date"])
    return [day for day in trading_days(start, end) if day not in present]
