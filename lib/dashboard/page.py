"""The dashboard's HTML and its Plotly figure, from a `View`: pure functions of small frames, no I/O."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
from pathlib import Path
from urllib.parse import urlencode

import jinja2
import pandas as pd

from lib.core.trading_days import trading_days
from lib.core.vocabulary import ADJUSTMENTS
from lib.dashboard.data import MOVING_AVERAGES, Universe, View, ViewRequest

# Quick spans offered next to the date inputs: label, calendar days back from the end of the data (None: all).
QUICK_SPANS = (("1M", 31), ("3M", 92), ("6M", 182), ("1Y", 366), ("All", None))
ADJUST_LABELS = {"raw": "as traded", "split": "split-adjusted", "total_return": "total return"}
HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"  # beside this module, so that the folder moves with it
COLORS = {"up": "#26a69a", "down": "#ef5350", "ma_20": "#ff9800", "ma_50": "#3f51b5", "band": "rgba(120,144,156,0.6)",
          "action": "#8e24aa", "anomaly": "#d81b60", "ticker": "#546e7a"}  # fmt: skip


def price_text(value: float | None) -> str:
    """A price as the page shows it: two decimals, four significant digits below 1."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or pd.isna(value):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _values(column: pd.Series) -> list:
    """A column as JSON values: NaN and NA as null."""
    return column.astype("object").where(column.notna(), None).tolist()


def _days(column: pd.Series) -> list[str]:
    return [pd.Timestamp(d).date().isoformat() for d in column]


def figure(view: View) -> dict:
    """The interactive chart as a plotly.js figure (data and layout): candlesticks with moving averages, Bollinger
    bands, anomaly, corporate-action and ticker-change marks; volume below; RSI and MACD panels when technical_indicators has rows
    for the span. A plain dict, built without plotly's validating classes (they cost most of a second per figure);
    `plotly.graph_objects.Figure(figure(view))` shows it in a notebook."""
    bars, indicators = view.bars, view.indicators
    panels = ["price", "volume"] + (["rsi", "macd"] if not indicators.empty else [])
    heights = {"price": 0.55, "volume": 0.15, "rsi": 0.15, "macd": 0.15}
    axis = {name: ("y" if i == 0 else f"y{i + 1}") for i, name in enumerate(panels)}
    gap, total = 0.03, sum(heights[p] for p in panels)
    layout: dict = {
        "height": 380 + 150 * (len(panels) - 1), "margin": {"l": 70, "r": 20, "t": 30, "b": 30}, "hovermode": "x unified",
        "legend": {"orientation": "h", "y": 1.06, "x": 0, "traceorder": "normal"}, "dragmode": "zoom",
        "uirevision": view.request.symbol,
        "plot_bgcolor": "white", "paper_bgcolor": "white", "shapes": [], "annotations": [],
        "xaxis": {"type": "date", "anchor": axis[panels[-1]], "rangebreaks": _closed_days(bars),
                  "gridcolor": "#eceff1", "rangeslider": {"visible": False}},
    }  # fmt: skip
    top = 1.0
    for name in panels:
        share = heights[name] / total * (1 - gap * (len(panels) - 1))
        key = "yaxis" if axis[name] == "y" else f"yaxis{axis[name][1:]}"
        layout[key] = {"domain": [max(0.0, top - share), top], "anchor": "x", "gridcolor": "#eceff1", "title": {"text": name}}
        top -= share + gap
    layout["yaxis"]["title"]["text"] = f"price ({ADJUST_LABELS[view.request.adjust]})"

    dates = _days(bars["date"])
    data: list[dict] = [{
        "type": "candlestick", "name": view.request.symbol, "x": dates, "open": _values(bars["open"]),
        "high": _values(bars["high"]), "low": _values(bars["low"]), "close": _values(bars["close"]),
        "increasing": {"line": {"color": COLORS["up"]}}, "decreasing": {"line": {"color": COLORS["down"]}},
        "text": [f"traded as {s}" for s in bars["symbol"]],  # hover: the ticker of the day, across a change of ticker
        "xaxis": "x", "yaxis": axis["price"],
    }]  # fmt: skip
    for window in MOVING_AVERAGES:
        data.append({"type": "scatter", "mode": "lines", "name": f"MA {window}", "x": dates, "y": _values(bars[f"ma_{window}"]),
                     "line": {"width": 1.3, "color": COLORS[f"ma_{window}"]}, "xaxis": "x", "yaxis": axis["price"]})  # fmt: skip
    # The indicators are computed on the split-adjusted series: their bands belong on that chart only.
    if not indicators.empty and view.request.adjust == "split":
        when = _days(indicators["date"])
        band = {"type": "scatter", "mode": "lines", "x": when, "xaxis": "x", "yaxis": axis["price"],
                "line": {"width": 1, "color": COLORS["band"], "dash": "dot"}}  # fmt: skip
        data.append(band | {"name": "Bollinger upper", "y": _values(indicators["bb_upper"])})
        data.append(band | {"name": "Bollinger lower", "y": _values(indicators["bb_lower"]), "fill": "tonexty",
                            "fillcolor": "rgba(120,144,156,0.08)"})  # fmt: skip
    data += _anomaly_marks(view, axis["price"])
    _mark_actions(layout, view, axis["price"])
    _mark_ticker_changes(layout, view, axis["price"])

    up = (bars["close"] >= bars["open"]).tolist()
    colors = [COLORS["up"] if u else COLORS["down"] for u in up]
    data.append({"type": "bar", "name": "volume", "x": dates, "y": _values(bars["volume"]), "opacity": 0.7, "showlegend": False,
                 "marker": {"color": colors}, "xaxis": "x", "yaxis": axis["volume"]})  # fmt: skip
    if "rsi" in axis:
        when = _days(indicators["date"])
        line = {"type": "scatter", "mode": "lines", "x": when, "xaxis": "x", "line": {"width": 1.2}}
        data.append(line | {"name": "RSI 14", "y": _values(indicators["rsi_14"]), "yaxis": axis["rsi"]})
        for level in (30, 70):
            layout["shapes"].append({"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": axis["rsi"], "y0": level,
                                     "y1": level, "line": {"width": 1, "dash": "dot", "color": "#9e9e9e"}})  # fmt: skip
        layout[f"yaxis{axis['rsi'][1:]}"] |= {"range": [0, 100], "title": {"text": "RSI"}}
        data.append({"type": "bar", "name": "MACD hist", "x": when, "y": _values(indicators["macd_hist"]), "xaxis": "x",
                     "yaxis": axis["macd"], "marker": {"color": "#b0bec5"}})  # fmt: skip
        data.append(line | {"name": "MACD", "y": _values(indicators["macd"]), "yaxis": axis["macd"]})
        data.append(line | {"name": "signal", "y": _values(indicators["macd_signal"]), "yaxis": axis["macd"]})
        layout[f"yaxis{axis['macd'][1:]}"]["title"] = {"text": "MACD"}
    return {"data": data, "layout": layout}


def _closed_days(bars: pd.DataFrame) -> list[dict]:
    """plotly rangebreaks for the days the market is shut (weekends, holidays) between the first and last bar."""
    if bars.empty:
        return [{"bounds": ["sat", "mon"]}]
    first, last = min(bars["date"]), max(bars["date"])
    sessions = set(trading_days(first, last))
    weekdays = pd.bdate_range(first, last).date
    holidays = [d.isoformat() for d in weekdays if d not in sessions]
    return [{"bounds": ["sat", "mon"]}] + ([{"values": holidays}] if holidays else [])


def _anomaly_marks(view: View, yaxis: str) -> list[dict]:
    if view.anomalies.empty or view.bars.empty:
        return []
    highs = view.bars.set_index("date")["high"]
    marks = view.anomalies.assign(y=view.anomalies["date"].map(highs))
    marks = marks[marks["y"].notna()]
    text = [f"{k}: value {_number(v)}, score {_number(s, 3)} (threshold {_number(t, 3)})"
            for k, v, s, t in zip(marks["kind"], marks["value"], marks["score"], marks["threshold"], strict=True)]  # fmt: skip
    return [{
        "type": "scatter", "mode": "markers", "name": "anomaly", "x": _days(marks["date"]),
        "y": (marks["y"].astype("float64") * 1.015).tolist(), "text": text, "hovertemplate": "%{text}<extra>anomaly</extra>",
        "marker": {"symbol": "triangle-down", "size": 10, "color": COLORS["anomaly"]}, "xaxis": "x", "yaxis": yaxis,
    }]  # fmt: skip


def action_label(action) -> str:
    if action.action_type == "split":
        return f"split {_number(action.split_to)}:{_number(action.split_from)}"
    return f"dividend {_number(action.cash_amount)} {action.currency or ''}".strip()


def _mark_actions(layout: dict, view: View, yaxis: str) -> None:
    for action in view.actions.itertuples():
        when = pd.Timestamp(action.ex_date).date().isoformat()
        layout["shapes"].append({"type": "line", "name": f"action {action.source_id}", "xref": "x", "x0": when, "x1": when,
                                 "yref": f"{yaxis} domain", "y0": 0, "y1": 1,
                                 "line": {"width": 1.5, "dash": "dash", "color": COLORS["action"]}})  # fmt: skip
        layout["annotations"].append({"x": when, "xref": "x", "y": 1, "yref": f"{yaxis} domain", "text": action_label(action),
                                      "showarrow": False, "yanchor": "bottom",
                                      "font": {"color": COLORS["action"], "size": 11}})  # fmt: skip


def ticker_change_label(old: str, new: str) -> str:
    return f"{old} → {new}"


def _mark_ticker_changes(layout: dict, view: View, yaxis: str) -> None:
    """A line where the security changed ticker, as an action's: its bars before it were traded under the old one."""
    for old, new, day in view.ticker_changes:
        when = day.isoformat()
        layout["shapes"].append({"type": "line", "name": f"ticker change {ticker_change_label(old, new)}", "xref": "x",
                                 "x0": when, "x1": when, "yref": f"{yaxis} domain", "y0": 0, "y1": 1,
                                 "line": {"width": 1.5, "dash": "dot", "color": COLORS["ticker"]}})  # fmt: skip
        layout["annotations"].append({"x": when, "xref": "x", "y": 0, "yref": f"{yaxis} domain",
                                      "text": ticker_change_label(old, new), "showarrow": False, "yanchor": "top",
                                      "font": {"color": COLORS["ticker"], "size": 11}})  # fmt: skip


# --------------------------------------------------------------------------------------------
# The page


def view_url(request: ViewRequest, **changes) -> str:
    values = {"symbol": request.symbol, "start": request.start.isoformat(), "end": request.end.isoformat(),
              "adjust": request.adjust} | changes  # fmt: skip
    return "/?" + urlencode(values)


def _controls(universe: Universe | None, request: ViewRequest | None, query: dict[str, str]) -> dict:
    """The form's values: the view's own, or what the URL held when it was refused (shown back, escaped)."""
    controls = {
        "symbol": request.symbol if request else query.get("symbol", ""),
        "start": request.start.isoformat() if request else query.get("start", ""),
        "end": request.end.isoformat() if request else query.get("end", ""),
        "adjust": request.adjust if request else query.get("adjust", "split"),
        "choices": [(a, ADJUST_LABELS[a]) for a in ADJUSTMENTS],
        "options": [], "bounds": None, "quick": [], "held": "",
    }  # fmt: skip
    if universe is not None:
        controls["options"] = list(universe.symbols.itertuples(index=False))
        # Old tickers are not offered, but one typed in opens its security (the picker submits what it knows).
        controls["held"] = " ".join(sorted(universe.held_tickers - set(universe.symbols["ticker"])))
        controls["bounds"] = (universe.first_date.isoformat(), universe.last_date.isoformat())
    if universe is not None and request is not None:
        for label, days in QUICK_SPANS:
            back = universe.first_date if days is None else universe.last_date - dt.timedelta(days=days)
            first = max(universe.first_date, back)
            controls["quick"].append((label, view_url(request, start=first.isoformat(), end=universe.last_date.isoformat())))
    return controls


def _table(frame: pd.DataFrame, testid: str, empty: str, formats: dict | None = None) -> dict:
    """A frame as the table macro takes it: column names, and per row (text, css class or None) per cell."""
    formats = formats or {}
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            text = formats[column](value) if column in formats else _number(value)
            cells.append((text, str(value) if column == "status" else None))
        rows.append(cells)
    return {"testid": testid, "empty": empty, "columns": list(frame.columns), "rows": rows}


def _percent(value) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * value:.2f}%"


def _quality(view: View) -> tuple[str, dict]:
    """The summary line (empty when there are no checks) and the table of the latest quality checks."""
    quality = view.quality
    if quality.empty:
        return "", _table(quality, "quality", "no quality_results yet: 03_quality has not run on this warehouse")
    failed = int((quality["status"] == "fail").sum())
    summary = f"run of {quality['ds'].iloc[0]}: {len(quality) - failed} passed, {failed} failed"
    return summary, _table(quality.drop(columns="ds"), "quality", "", {"details": lambda v: "" if v is None else str(v)[:160]})


def render_view(universe: Universe, view: View) -> str:
    """The whole page for one view, the figure embedded as JSON (an attribute of the chart) for the page's script."""
    request, bars = view.request, view.bars
    last = view.last_close
    trend = view.trend.drop(columns=["ds"]) if not view.trend.empty else view.trend
    actions = view.actions
    if not actions.empty:
        actions = actions.assign(action=[action_label(a) for a in actions.itertuples()])
    days = view.missing_days
    quality_summary, quality = _quality(view)
    return _render(
        "view.html.j2", title=request.symbol, controls=_controls(universe, request, {}),
        symbol=request.symbol, name=universe.symbols.set_index("ticker")["name"].get(request.symbol, ""),
        exact="" if last is None else repr(last), last_close=price_text(last), bar_count=len(bars),
        start=request.start.isoformat(), end=request.end.isoformat(), adjust_label=ADJUST_LABELS[request.adjust],
        first_date=universe.first_date.isoformat(), last_date=universe.last_date.isoformat(),
        figure_json=json.dumps(figure(view), allow_nan=False),
        trend_note=f" (run of {view.trend['ds'].iloc[0]})" if not view.trend.empty else "",
        trend=_table(trend, "trend", "no trend_summary for this symbol yet (04_trends writes it)",
                     {"total_return": _percent, "annualized_volatility": _percent, "max_drawdown": _percent}),
        actions=_table(actions, "actions", "none in the span"),
        anomalies=_table(view.anomalies, "anomalies", "none flagged in the span"),
        missing_days=days,
        missing_shown=", ".join(d.isoformat() for d in days[:60]) + (f" … and {len(days) - 60} more" if len(days) > 60 else ""),
        quality_summary=quality_summary, quality=quality, notes=view.notes,
        ticker_changes=[f"{ticker_change_label(old, new)} on {day}" for old, new, day in view.ticker_changes],
    )  # fmt: skip


def render_message(title: str, message: str, universe: Universe | None = None, query: dict[str, str] | None = None) -> str:
    """A page that explains what went wrong (bad URL input, no warehouse) and keeps the controls when it can."""
    return _render(
        "message.html.j2", title=title, message=message,
        controls=_controls(universe, None, query or {}) if universe is not None else None,
        default_symbol=universe.default_symbol if universe is not None else "",
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _templates():
    # Autoescape on every template: a value reaches the page escaped unless a template says otherwise (none does).
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip


def _render(template: str, **values) -> str:
    return _templates().get_template(template).render(plotly_url=PLOTLY_URL, script_url=SCRIPT_URL, **values)


def plotly_version() -> str:
    import plotly

    return plotly.__version__


PLOTLY_URL = f"/static/plotly-{plotly_version()}.min.js"


# The page's script, a file of its own: the Content-Security-Policy allows scripts from the dashboard's own URLs only.
SCRIPT_FILE = HERE / "static" / "dashboard.js"
SCRIPT_URL = f"/static/dashboard-{hashlib.sha256(SCRIPT_FILE.read_bytes()).hexdigest()[:12]}.js"
