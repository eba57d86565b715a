"""Report figures: each function takes a small, already aggregated pandas frame and returns a matplotlib Figure.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`), never pyplot, so they hold no
global state, work on any backend (Agg included) and can be shown inline by a notebook and saved with
`save_figure`. Every function draws a "No data" figure for an empty frame instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, MaxNLocator, PercentFormatter

REPORT_SIZE = (11, 6)
SAVE_DPI = 110
GAIN_GREEN = "#2e7d32"
LOSS_RED = "#c62828"
WARN_AMBER = "#f9a825"
PASS_FILL = "#c8e6c9"
FAIL_FILL = "#ffcdd2"
WARN_FILL = "#ffe082"
MISSING_FILL = "#eeeeee"


# --------------------------------------------------------------------------------------------- helpers


def _require_columns(df: pd.DataFrame, needed: Iterable[str], caller: str) -> None:
    needed = list(needed)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"plots.{caller} needs columns {needed}; missing {missing}, found {list(df.columns)}.")


def _figure(figsize: tuple[float, float] = REPORT_SIZE) -> Figure:
    # Constrained layout keeps titles, outside legends and colourbars from overlapping.
    return Figure(figsize=figsize, layout="constrained")


def _no_data_figure(title: str, figsize: tuple[float, float] = REPORT_SIZE) -> Figure:
    fig = _figure(figsize)
    ax = fig.subplots()
    _no_data_axes(ax, title)
    return fig


def _no_data_axes(ax, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "No data", ha="center", va="center", fontsize=14, color="grey", transform=ax.transAxes)
    ax.set_axis_off()


def _as_dates(values: pd.Series) -> pd.Series:
    """Spark DATE columns arrive as python dates (object dtype); matplotlib wants datetime64."""
    return pd.to_datetime(values)


def _format_date_axis(ax) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _legend_outside(ax, **kwargs) -> None:
    """A legend to the right of the axes, so it never hides data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def _grid_axes(fig: Figure, count: int, max_cols: int = 3, sharex: bool = True) -> list:
    """`count` axes in a grid of at most `max_cols` columns; surplus cells are removed."""
    ncols = min(max_cols, count)
    nrows = -(-count // ncols)
    grid = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[count:]:
        ax.remove()
    return axes[:count]


def _symbols(df: pd.DataFrame, max_symbols: int | None) -> list[str]:
    symbols = sorted(df["symbol"].dropna().unique())
    return symbols[:max_symbols] if max_symbols else symbols


def _annotate_cells(ax, values: np.ndarray, text_format: str, norm, cmap) -> None:
    """Write each cell's value, in white on dark cells and black on light ones."""
    for (row, col), value in np.ndenumerate(values):
        if np.isnan(value):
            continue
        red, green, blue, _ = cmap(norm(value))
        luminance = 0.299 * red + 0.587 * green + 0.114 * blue
        ax.text(
            col,
            row,
            text_format.format(value),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if luminance < 0.5 else "black",
        )


def save_figure(fig: Figure, run_dir: str | Path, name: str) -> Path:
    """Write `fig` to `<run_dir>/figures/<name>.png` (folders created) and return that path."""
    stem = Path(name).stem if name.endswith(".png") else name
    if not stem or "/" in stem or "\\" in stem:
        raise ValueError(f"save_figure needs a plain file name such as 'drawdowns', got {name!r}.")
    figures = Path(run_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / f"{stem}.png"
    fig.savefig(path, dpi=SAVE_DPI, facecolor="white")
    return path


# --------------------------------------------------------------------------------------------- trends


def price_with_moving_averages(df: pd.DataFrame, max_symbols: int = 12) -> Figure:
    """Small multiples, one per symbol: close and every `ma_<n>` column present.

    Needs `symbol`, `date`, `close`; draws `ma_*` columns (e.g. ma_20, ma_50, ma_200) in window order.
    """
    title = "Close price and moving averages"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "date", "close"], "price_with_moving_averages")
    ma_columns = sorted((c for c in df.columns if c.startswith("ma_") and c[3:].isdigit()), key=lambda c: int(c[3:]))
    symbols = _symbols(df, max_symbols)
    fig = _figure()
    fig.suptitle(title)
    for ax, symbol in zip(_grid_axes(fig, len(symbols)), symbols, strict=True):
        rows = df[df["symbol"] == symbol].sort_values("date")
        dates = _as_dates(rows["date"])
        ax.plot(dates, rows["close"].astype(float), label="close", color="black", linewidth=1.2)
        for column in ma_columns:
            ax.plot(dates, rows[column].astype(float), label=f"{column[3:]}-day MA", linewidth=1.0)
        ax.set_title(symbol)
        ax.set_ylabel("Price (USD)")
        ax.set_xlabel("Date")
        ax.grid(alpha=0.3)
        _format_date_axis(ax)
    # One legend for all panels: every panel draws the same series in the same order.
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


def monthly_returns_heatmap(df: pd.DataFrame) -> Figure:
    """Symbol x month grid of monthly returns, diverging colours centred on 0, cells labelled in %.

    Needs `symbol`, `month_start`, `monthly_return` (a fraction: 0.05 is 5 %).
    """
    title = "Monthly returns"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "month_start", "monthly_return"], "monthly_returns_heatmap")
    frame = df.assign(month_start=_as_dates(df["month_start"]))
    grid = frame.pivot_table(index="symbol", columns="month_start", values="monthly_return", aggfunc="mean")
    grid = grid.sort_index().sort_index(axis=1)
    values = grid.to_numpy(dtype=float)
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    limit = max(limit, 0.01)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    cmap = colormaps["RdYlGn"]
    fig = _figure()
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    _annotate_cells(ax, values, "{:.1%}", norm, cmap)
    ax.set_xticks(range(grid.shape[1]), [m.strftime("%Y-%m") for m in grid.columns], rotation=45, ha="right")
    ax.set_yticks(range(grid.shape[0]), list(grid.index))
    ax.set_xlabel("Month")
    ax.set_ylabel("Symbol")
    ax.set_title(title)
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("Monthly return (%)")
    colorbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


def _lines_by_symbol(
    df: pd.DataFrame, value: str, title: str, ylabel: str, percent: bool, caller: str, max_symbols: int | None
) -> Figure:
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "date", value], caller)
    fig = _figure()
    ax = fig.subplots()
    for symbol in _symbols(df, max_symbols):
        rows = df[df["symbol"] == symbol].sort_values("date")
        ax.plot(_as_dates(rows["date"]), rows[value].astype(float), label=symbol, linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel("Date")
    ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    _format_date_axis(ax)
    _legend_outside(ax, title="Symbol")
    return fig


def drawdown_curves(df: pd.DataFrame, max_symbols: int | None = 20) -> Figure:
    """One line per symbol of the drawdown from its running peak. Needs `symbol`, `date`, `drawdown`."""
    return _lines_by_symbol(df, "drawdown", "Drawdown from running peak", "Drawdown (%)", True, "drawdown_curves", max_symbols)


def rolling_volatility_chart(df: pd.DataFrame, max_symbols: int | None = 20) -> Figure:
    """One line per symbol of annualised rolling volatility. Needs `symbol`, `date`, `rolling_volatility`."""
    return _lines_by_symbol(
        df,
        "rolling_volatility",
        "Rolling volatility of daily returns",
        "Annualised volatility (%)",
        True,
        "rolling_volatility_chart",
        max_symbols,
    )


def volume_with_anomalies(df: pd.DataFrame, max_symbols: int = 12) -> Figure:
    """Small multiples, one per symbol: daily volume with anomalous days marked in red.

    Needs `symbol`, `date`, `volume`, `is_anomaly`.
    """
    title = "Daily volume and anomalies"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "date", "volume", "is_anomaly"], "volume_with_anomalies")
    symbols = _symbols(df, max_symbols)
    fig = _figure()
    fig.suptitle(title)
    for ax, symbol in zip(_grid_axes(fig, len(symbols)), symbols, strict=True):
        rows = df[df["symbol"] == symbol].sort_values("date")
        dates = _as_dates(rows["date"])
        volume = rows["volume"].astype(float)
        # A line with a filled area, not bars: one-day bars over a year are thinner than a pixel and
        # can drop exactly the spikes this chart is for.
        ax.plot(dates, volume, color="steelblue", linewidth=0.8, label="volume")
        ax.fill_between(dates, volume, color="steelblue", alpha=0.25, linewidth=0)
        anomalous = rows["is_anomaly"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        ax.scatter(dates[anomalous], volume[anomalous], color=LOSS_RED, marker="v", s=30, zorder=3, label="anomaly")
        ax.set_title(symbol)
        ax.set_xlabel("Date")
        ax.set_ylabel("Volume (shares)")
        ax.yaxis.set_major_formatter(EngFormatter())
        _format_date_axis(ax)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


def correlation_heatmap(corr_df: pd.DataFrame) -> Figure:
    """Labelled correlation matrix on a fixed -1..1 diverging scale. Needs a square frame (symbols x symbols)."""
    title = "Correlation of daily returns"
    if corr_df.empty:
        return _no_data_figure(title)
    values = corr_df.to_numpy(dtype=float)
    cmap = colormaps["RdBu_r"]
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-1.0, vmax=1.0)
    fig = _figure()
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm)
    _annotate_cells(ax, values, "{:.2f}", norm, cmap)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in corr_df.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in corr_df.index])
    ax.set_xlabel("Symbol")
    ax.set_ylabel("Symbol")
    ax.set_title(title)
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("Pearson correlation (-1 to 1)")
    return fig


def top_movers_chart(df: pd.DataFrame, months: int = 3) -> Figure:
    """Horizontal bars of the biggest gainers (green) and losers (red) of the `months` most recent months.

    Needs `month_start`, `symbol`, `monthly_return`; `direction` if present, else the sign decides.
    """
    title = "Top movers by month"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["month_start", "symbol", "monthly_return"], "top_movers_chart")
    frame = df.assign(month_start=_as_dates(df["month_start"]))
    recent = sorted(frame["month_start"].unique())[-months:]
    fig = _figure()
    fig.suptitle(title)
    axes = fig.subplots(1, len(recent), squeeze=False).flat
    for ax, month in zip(axes, recent, strict=True):
        rows = frame[frame["month_start"] == month].sort_values("monthly_return")
        returns = rows["monthly_return"].astype(float)
        if "direction" in rows:
            gain = (rows["direction"] == "gainer").to_numpy()
        else:
            gain = (returns >= 0).to_numpy()
        colors = np.where(gain, GAIN_GREEN, LOSS_RED)
        ax.barh(range(len(rows)), returns, color=colors)
        ax.set_yticks(range(len(rows)), list(rows["symbol"]))
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("Monthly return (%)")
        ax.set_title(pd.Timestamp(month).strftime("%B %Y"))
        ax.grid(axis="x", alpha=0.3)
    fig.axes[0].set_ylabel("Symbol")
    fig.legend(
        [Patch(color=GAIN_GREEN), Patch(color=LOSS_RED)],
        ["gainer", "loser"],
        loc="outside lower center",
        ncols=2,
        frameon=False,
    )
    return fig


# --------------------------------------------------------------------------------------------- pipeline


def ingest_coverage(bars_per_day: pd.DataFrame, calls: Mapping[str, int] | pd.DataFrame) -> Figure:
    """Two panels: bars stored per day, and API calls made by endpoint.

    `bars_per_day` needs `date`, `bars`. `calls` is {endpoint: count} or a frame of `endpoint`, `calls`.
    """
    title = "Ingest coverage"
    if isinstance(calls, pd.DataFrame):
        if not calls.empty:
            _require_columns(calls, ["endpoint", "calls"], "ingest_coverage")
        calls_by_endpoint = calls.groupby("endpoint")["calls"].sum() if not calls.empty else pd.Series(dtype=int)
    else:
        calls_by_endpoint = pd.Series(dict(calls), dtype="int64")
    calls_by_endpoint = calls_by_endpoint.sort_values()
    if bars_per_day.empty and calls_by_endpoint.empty:
        return _no_data_figure(title)
    fig = _figure()
    fig.suptitle(title)
    bars_ax, calls_ax = fig.subplots(1, 2, width_ratios=[2, 1])
    if bars_per_day.empty:
        _no_data_axes(bars_ax, "Bars per day")
    else:
        _require_columns(bars_per_day, ["date", "bars"], "ingest_coverage")
        rows = bars_per_day.sort_values("date")
        bars_ax.bar(_as_dates(rows["date"]), rows["bars"].astype(float), width=0.8, color="steelblue")
        bars_ax.set_title("Bars per day")
        bars_ax.set_xlabel("Date")
        bars_ax.set_ylabel("Bars (count)")
        bars_ax.grid(axis="y", alpha=0.3)
        _format_date_axis(bars_ax)
    if calls_by_endpoint.empty:
        _no_data_axes(calls_ax, "API calls by endpoint")
    else:
        calls_ax.barh(range(len(calls_by_endpoint)), calls_by_endpoint.to_numpy(dtype=float), color="slategray")
        calls_ax.set_yticks(range(len(calls_by_endpoint)), [str(e) for e in calls_by_endpoint.index])
        calls_ax.set_title("API calls by endpoint")
        calls_ax.set_xlabel("Calls (count)")
        calls_ax.set_ylabel("Endpoint")
        calls_ax.grid(axis="x", alpha=0.3)
    return fig


def exploded_series_sample(df: pd.DataFrame, metric: str = "close", max_symbols: int = 5) -> Figure:
    """A few symbols' monthly arrays exploded back to daily series: one line with markers per symbol.

    Needs `symbol`, `date`, `metric_name`, `value`; draws rows of `metric` only. Null values (weekends,
    holidays, missing bars) break the line.
    """
    title = f"Exploded daily series: {metric}"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "date", "metric_name", "value"], "exploded_series_sample")
    rows = df[df["metric_name"] == metric]
    if rows.empty:
        return _no_data_figure(title)
    fig = _figure()
    ax = fig.subplots()
    for symbol in _symbols(rows, max_symbols):
        series = rows[rows["symbol"] == symbol].sort_values("date")
        ax.plot(_as_dates(series["date"]), series["value"].astype(float), marker="o", markersize=3, linewidth=1.0, label=symbol)
    ax.set_title(title)
    ax.set_xlabel("Date")
    ax.set_ylabel("Price (USD)" if metric in {"open", "high", "low", "close", "vwap"} else metric)
    ax.grid(alpha=0.3)
    _format_date_axis(ax)
    _legend_outside(ax, title="Symbol")
    return fig


def _status_fill(status: str, severity: str | None) -> str:
    status = str(status).lower()
    if status == "pass":
        return PASS_FILL
    if status == "warn" or (status == "fail" and str(severity).lower() == "warn"):
        return WARN_FILL
    if status == "fail":
        return FAIL_FILL
    return MISSING_FILL


def quality_checks_table(df: pd.DataFrame) -> Figure:
    """A table of this run's checks, rows coloured: pass green, failed error red, failed warning amber.

    Needs `check_name`, `table_name`, `severity`, `status`, `failed_rows`.
    """
    title = "Quality checks"
    columns = ["table_name", "check_name", "severity", "status", "failed_rows"]
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, columns, "quality_checks_table")
    rows = df.sort_values(["table_name", "check_name"])
    cell_text = [
        [
            str(r.table_name),
            str(r.check_name),
            str(r.severity),
            str(r.status),
            "" if pd.isna(r.failed_rows) else f"{int(r.failed_rows):,}",
        ]
        for r in rows.itertuples(index=False)
    ]
    fills = [[_status_fill(r.status, r.severity)] * len(columns) for r in rows.itertuples(index=False)]
    height = min(max(2.0, 0.35 * (len(rows) + 2)), 12.0)
    fig = _figure((11, height))
    ax = fig.subplots()
    ax.set_axis_off()
    table = ax.table(
        cellText=cell_text,
        cellColours=fills,
        colLabels=["table", "check", "severity", "status", "failed rows"],
        colColours=["#dddddd"] * len(columns),
        loc="center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    passed = int((rows["status"].str.lower() == "pass").sum())
    ax.set_title(f"{title}: {passed} of {len(rows)} passed")
    return fig


def quality_history(df: pd.DataFrame, max_runs: int = 30) -> Figure:
    """Pass/fail grid of each check (rows) over the most recent `max_runs` runs (columns).

    Needs `ds`, `check_name`, `status`; with `table_name` present, rows are labelled `table.check`. A run
    where a check has several results counts as failed if any failed; a check not run is grey.
    """
    title = "Quality check history"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["ds", "check_name", "status"], "quality_history")
    frame = df.assign(ds=_as_dates(df["ds"]), failed=df["status"].str.lower() != "pass")
    if "table_name" in frame:
        frame["check"] = frame["table_name"].astype(str) + "." + frame["check_name"].astype(str)
    else:
        frame["check"] = frame["check_name"].astype(str)
    runs = sorted(frame["ds"].unique())[-max_runs:]
    frame = frame[frame["ds"].isin(runs)]
    failed = frame.pivot_table(index="check", columns="ds", values="failed", aggfunc="max")
    failed = failed.reindex(columns=runs).sort_index()
    # 0 = pass, 1 = fail, 2 = not run.
    codes = failed.to_numpy(dtype=float)
    codes = np.where(np.isnan(codes), 2.0, codes)
    cmap = ListedColormap([PASS_FILL, FAIL_FILL, MISSING_FILL])
    fig = _figure((11, min(max(3.0, 0.4 * len(failed) + 2.0), 12.0)))
    ax = fig.subplots()
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(runs)), [pd.Timestamp(r).strftime("%Y-%m-%d") for r in runs], rotation=45, ha="right")
    ax.set_yticks(range(len(failed)), list(failed.index))
    ax.set_xticks(np.arange(-0.5, len(runs)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(failed)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("Run date (ds)")
    ax.set_ylabel("Check")
    ax.set_title(title)
    ax.legend(
        [Patch(color=PASS_FILL), Patch(color=FAIL_FILL), Patch(color=MISSING_FILL)],
        ["pass", "fail", "not run"],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    return fig


def array_coverage(df: pd.DataFrame, max_symbols: int = 30) -> Figure:
    """Which days have a bar, from the exploded monthly arrays.

    With `symbol`, `date`, `has_bar` and at most `max_symbols` symbols: a symbol x calendar-day grid
    (green = bar, white = none). With more symbols, or given `date`, `bars`: bars per day as counts.
    """
    title = "Bars in the monthly arrays"
    if df.empty:
        return _no_data_figure(title)
    if "symbol" in df.columns and "has_bar" in df.columns:
        frame = df.assign(date=_as_dates(df["date"]), has_bar=df["has_bar"].astype("boolean").fillna(False).astype(int))
        if frame["symbol"].nunique() <= max_symbols:
            return _coverage_grid(frame, f"{title}: symbol x day")
        bars_per_day = frame.groupby("date", as_index=False)["has_bar"].sum().rename(columns={"has_bar": "bars"})
    else:
        _require_columns(df, ["date", "bars"], "array_coverage")
        bars_per_day = df.assign(date=_as_dates(df["date"]))
    rows = bars_per_day.sort_values("date")
    fig = _figure()
    ax = fig.subplots()
    ax.bar(rows["date"], rows["bars"].astype(float), width=0.8, color=GAIN_GREEN)
    ax.set_title(f"{title}: bars per day")
    ax.set_xlabel("Date")
    ax.set_ylabel("Symbols with a bar (count)")
    ax.grid(axis="y", alpha=0.3)
    _format_date_axis(ax)
    return fig


def _coverage_grid(frame: pd.DataFrame, title: str) -> Figure:
    days = pd.date_range(frame["date"].min(), frame["date"].max(), freq="D")
    grid = frame.pivot_table(index="symbol", columns="date", values="has_bar", aggfunc="max").reindex(columns=days).sort_index()
    present = grid.fillna(0).to_numpy(dtype=float)
    first, last = mdates.date2num(days[0]), mdates.date2num(days[-1])
    fig = _figure((11, min(max(3.0, 0.3 * len(grid) + 2.0), 12.0)))
    ax = fig.subplots()
    ax.imshow(
        present,
        cmap=ListedColormap(["white", GAIN_GREEN]),
        vmin=0.0,
        vmax=1.0,
        aspect="auto",
        interpolation="nearest",
        extent=(first - 0.5, last + 0.5, len(grid) - 0.5, -0.5),
    )
    ax.xaxis_date()
    _format_date_axis(ax)
    ax.set_yticks(range(len(grid)), list(grid.index))
    ax.set_yticks(np.arange(0.5, len(grid) - 1), minor=True)
    ax.grid(axis="y", which="minor", color="white", linewidth=1.5)
    ax.tick_params(axis="y", which="minor", length=0)
    ax.set_xlabel("Date")
    ax.set_ylabel("Symbol")
    ax.set_title(title)
    ax.legend(
        [Patch(facecolor=GAIN_GREEN), Patch(facecolor="white", edgecolor="grey")],
        ["bar", "no bar"],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    return fig


# --------------------------------------------------------------------------------------------- indicators, anomalies, forecasts


def indicator_panels(df: pd.DataFrame, max_symbols: int = 4) -> Figure:
    """One column per symbol: close with Bollinger bands, MACD with signal and histogram, RSI with 30/70 lines.

    Needs `symbol`, `date`, `close`, `bb_upper`, `bb_middle`, `bb_lower`, `macd`, `macd_signal`, `macd_hist`, `rsi_14`.
    """
    title = "Bollinger bands (20, 2), MACD (12, 26, 9) and RSI (14)"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "date", "close", "bb_upper", "bb_middle", "bb_lower", "macd", "macd_signal",
                          "macd_hist", "rsi_14"], "indicator_panels")  # fmt: skip
    symbols = _symbols(df, max_symbols)
    fig = _figure((max(REPORT_SIZE[0], 4 * len(symbols)), 8))
    fig.suptitle(title)
    grid = fig.subplots(3, len(symbols), sharex="col", squeeze=False, height_ratios=[2, 1, 1])
    for col, symbol in enumerate(symbols):
        rows = df[df["symbol"] == symbol].sort_values("date")
        dates = _as_dates(rows["date"])
        price, macd, rsi = grid[0][col], grid[1][col], grid[2][col]
        price.fill_between(dates, rows["bb_lower"].astype(float), rows["bb_upper"].astype(float), color="steelblue",
                           alpha=0.15, linewidth=0, label="Bollinger band")  # fmt: skip
        price.plot(dates, rows["bb_middle"], color="steelblue", linewidth=0.8, linestyle="--", label="SMA 20")
        price.plot(dates, rows["close"], color="black", linewidth=1.0, label="close")
        price.set_title(symbol)
        price.set_ylabel("Price (split-adjusted)")
        hist = rows["macd_hist"].astype(float)
        macd.bar(dates, hist, color=np.where(hist >= 0, GAIN_GREEN, LOSS_RED), width=1.0, alpha=0.5, label="histogram")
        macd.plot(dates, rows["macd"], color="black", linewidth=0.8, label="MACD")
        macd.plot(dates, rows["macd_signal"], color=WARN_AMBER, linewidth=0.8, label="signal")
        macd.set_ylabel("MACD")
        rsi.plot(dates, rows["rsi_14"], color="purple", linewidth=0.8, label="RSI 14")
        for level in (30, 70):
            rsi.axhline(level, color="grey", linewidth=0.6, linestyle=":")
        rsi.set_ylim(0, 100)
        rsi.set_ylabel("RSI")
        rsi.set_xlabel("Date")
        _format_date_axis(rsi)
    for row in grid:
        handles, labels = row[0].get_legend_handles_labels()
        row[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return fig


def anomalies_chart(df: pd.DataFrame) -> Figure:
    """The flagged days of a span: robust z-score by date, one panel per kind, labelled by symbol.

    Needs `symbol`, `date`, `kind`, `score`, `threshold` (the anomalies table).
    """
    title = "Anomalies: robust z-score of the flagged days"
    if df.empty:
        return _no_data_figure(title)
    _require_columns(df, ["symbol", "date", "kind", "score", "threshold"], "anomalies_chart")
    kinds = sorted(df["kind"].unique())
    fig = _figure()
    fig.suptitle(title)
    for ax, kind in zip(_grid_axes(fig, len(kinds)), kinds, strict=True):
        rows = df[df["kind"] == kind]
        dates = _as_dates(rows["date"])
        ax.scatter(dates, rows["score"], color=np.where(rows["score"] >= 0, GAIN_GREEN, LOSS_RED), s=25, zorder=3)
        for threshold in rows["threshold"].unique():
            ax.axhline(threshold, color="grey", linewidth=0.6, linestyle=":")
            ax.axhline(-threshold, color="grey", linewidth=0.6, linestyle=":")
        for date, score, symbol in zip(dates, rows["score"], rows["symbol"], strict=True):
            ax.annotate(symbol, (date, score), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{kind} ({len(rows)} days)")
        ax.set_xlabel("Date")
        ax.set_ylabel("Robust z-score")
        _format_date_axis(ax)
    return fig


def forecasts_vs_actuals(closes: pd.DataFrame, forecasts: pd.DataFrame, horizon: int = 1, max_symbols: int = 4) -> Figure:
    """Small multiples, one per symbol: the actual close and each model's forecast of it `horizon` days ahead.

    `closes` needs `symbol`, `date`, `close`; `forecasts` the forecasts table's `symbol`, `model`, `horizon`,
    `target_date`, `predicted_close`.
    """
    title = f"Forecasts {horizon} trading day(s) ahead vs the actual close"
    chosen = forecasts[forecasts["horizon"] == horizon] if not forecasts.empty else forecasts
    if chosen.empty or closes.empty:
        return _no_data_figure(title)
    _require_columns(closes, ["symbol", "date", "close"], "forecasts_vs_actuals")
    _require_columns(chosen, ["symbol", "model", "horizon", "target_date", "predicted_close"], "forecasts_vs_actuals")
    symbols = _symbols(chosen, max_symbols)
    fig = _figure()
    fig.suptitle(title)
    for ax, symbol in zip(_grid_axes(fig, len(symbols), max_cols=2), symbols, strict=True):
        actual = closes[closes["symbol"] == symbol].sort_values("date")
        ax.plot(_as_dates(actual["date"]), actual["close"], color="black", linewidth=1.2, label="actual")
        for model, rows in chosen[chosen["symbol"] == symbol].groupby("model"):
            rows = rows.sort_values("target_date")
            ax.plot(_as_dates(rows["target_date"]), rows["predicted_close"], linewidth=0.9, marker=".", label=model)
        ax.set_title(symbol)
        ax.set_xlabel("Target date")
        ax.set_ylabel("Close")
        _format_date_axis(ax)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


def forecast_error_by_horizon(metrics: pd.DataFrame) -> Figure:
    """MAE by horizon per model (left) and skill vs naive (right, above 0 beats naive).

    Needs `model`, `horizon`, `mae`, `skill_vs_naive` (the forecast_metrics table of one ds).
    """
    title = "Out-of-sample error by horizon"
    if metrics.empty:
        return _no_data_figure(title)
    _require_columns(metrics, ["model", "horizon", "mae", "skill_vs_naive"], "forecast_error_by_horizon")
    fig = _figure()
    fig.suptitle(title)
    error_ax, skill_ax = fig.subplots(1, 2)
    for model, rows in metrics.sort_values("horizon").groupby("model"):
        error_ax.plot(rows["horizon"], rows["mae"], marker="o", label=model)
        skill_ax.plot(rows["horizon"], rows["skill_vs_naive"], marker="o", label=model)
    error_ax.set_xlabel("Horizon (trading days)")
    error_ax.set_ylabel("MAE (price units)")
    skill_ax.axhline(0, color="grey", linewidth=0.8)
    skill_ax.set_xlabel("Horizon (trading days)")
    skill_ax.set_ylabel("Skill vs naive: 1 - MAE / MAE(naive)")
    skill_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax in (error_ax, skill_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(skill_ax)
    return fig


def intraday_minute_bars(df: pd.DataFrame, max_symbols: int = 4) -> Figure:
    """A day's minute closes (top, one line per symbol, as a multiple of its first close) and volume per minute
    (bottom), in New York time.

    Needs `symbol`, `window_start` (UTC instants), `close`, `volume` (minute_bars rows of one day).
    """
    title = "Minute bars"
    if df.empty:
        return _no_data_figure(f"{title}: none stored for this day (make stream lands a simulated day)")
    _require_columns(df, ["symbol", "window_start", "close", "volume"], "intraday_minute_bars")
    fig = _figure()
    fig.suptitle(title)
    price_ax, volume_ax = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    for symbol in _symbols(df, max_symbols):
        rows = df[df["symbol"] == symbol].sort_values("window_start")
        times = pd.to_datetime(rows["window_start"], utc=True).dt.tz_convert("America/New_York").dt.tz_localize(None)
        price_ax.plot(times, rows["close"] / rows["close"].iloc[0], linewidth=0.9, label=symbol)
        volume_ax.plot(times, rows["volume"], linewidth=0.6, label=symbol)
    price_ax.set_ylabel("Close / first close")
    volume_ax.set_ylabel("Volume per minute")
    volume_ax.yaxis.set_major_formatter(EngFormatter())
    volume_ax.set_xlabel("New York time")
    volume_ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    _legend_outside(price_ax)
    return fig
