"""The dashboard as a person uses it: a small pipeline run, `python -m lib.dashboard` on loopback, headless Chromium.

The module's warehouse comes from `lib.run` (ingest, monthly rollup, quality: 20 simulator tickers, two months);
a split, technical indicators, an anomaly and a trend row are added with pyiceberg, as the analysis steps would.
What the page shows is checked against the tables read independently (the monthly arrays through pyiceberg, the
split applied by hand). Any browser console error fails a test. Screenshots go to test-artifacts/dashboard/.
The unit tests at the end build their frames by hand and need neither a pipeline nor a browser.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from lib.settings.command_line import load_params_file
from lib.settings.config import RunConfig

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
DS, START_DS, TICKERS = dt.date(2024, 3, 5), dt.date(2024, 1, 2), 20
SPLIT_EX_DATE = dt.date(2024, 2, 15)  # a 2-for-1 split of the picked symbol
e2e = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_for(warehouse: Path) -> RunConfig:
    params = load_params_file(REPO / "params" / "local.yaml") | {"warehouse": str(warehouse)}
    return RunConfig.from_params(**params)


# --------------------------------------------------------------------------------------------
# Independent reads: pyiceberg on the tables, no lib.dashboard


def arrays_daily(warehouse: Path, symbol: str) -> pd.DataFrame:
    """date, close, volume of `symbol` straight from the monthly arrays (day i + 1 of the month at index i)."""
    from pyiceberg.expressions import EqualTo

    from lib.storage.catalog import pyiceberg_catalog

    table = pyiceberg_catalog(config_for(warehouse)).load_table("stocks.monthly_stock_prices")
    rows = table.scan(row_filter=EqualTo("symbol", symbol)).to_pandas()
    values: dict[tuple[dt.date, str], float] = {}
    for row in rows.itertuples():
        for i, value in enumerate(row.metric_array):
            if value is not None and not np.isnan(value):
                values[(row.month_start + dt.timedelta(days=i), row.metric_name)] = value
    frame = pd.Series(values).unstack()
    return frame[frame["close"].notna()].rename_axis("date").reset_index().sort_values("date").reset_index(drop=True)


def most_traded(warehouse: Path) -> str:
    from pyiceberg.expressions import EqualTo

    from lib.storage.catalog import pyiceberg_catalog

    table = pyiceberg_catalog(config_for(warehouse)).load_table("stocks.monthly_stock_prices")
    volumes = table.scan(row_filter=EqualTo("metric_name", "volume")).to_pandas()
    latest = volumes[volumes["month_start"] == volumes["month_start"].max()]
    totals = {r.symbol: np.nansum(np.asarray(r.metric_array, dtype="float64")) for r in latest.itertuples()}
    return max(totals, key=totals.get)


def append_rows(warehouse: Path, name: str, rows: list[dict]) -> None:
    import pyarrow as pa

    from lib.storage.catalog import pyiceberg_catalog

    table = pyiceberg_catalog(config_for(warehouse)).load_table(f"stocks.{name}")
    schema = table.schema().as_arrow()
    table.append(pa.Table.from_pylist(rows, schema=schema))


# --------------------------------------------------------------------------------------------
# The module's warehouse and server


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A warehouse from a small pipeline run, plus the analysis rows of one symbol; yields (warehouse, symbol)."""
    root = tmp_path_factory.mktemp("dashboard")
    warehouse = root / "warehouse"
    env = {k: v for k, v in os.environ.items() if k not in ("POLYGON_API_KEY", "MASSIVE_API_KEY")}
    run = subprocess.run(
        [sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--ds", DS.isoformat(), "--start-ds", START_DS.isoformat(),
         "-p", "warehouse", str(warehouse), "-p", "simulator_tickers", str(TICKERS), "--runs-root", str(root / "runs"),
         "--notebooks", "01_ingest", "02_monthly_rollup", "03_quality"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    default = most_traded(warehouse)
    from lib.storage.catalog import pyiceberg_catalog

    tickers = pyiceberg_catalog(config_for(warehouse)).load_table("stocks.stock_tickers").scan().to_pandas()
    symbol = sorted(set(tickers["ticker"]) - {default})[1]
    daily = arrays_daily(warehouse, symbol)
    append_rows(warehouse, "corporate_actions", [{
        "symbol": symbol, "action_type": "split", "ex_date": SPLIT_EX_DATE, "split_from": 1.0, "split_to": 2.0,
        "source_id": "test-split-1", "first_seen_ds": DS, "last_seen_ds": DS,
    }])  # fmt: skip
    # Indicator values need not be TA-Lib's here: the page only draws what the table holds. Bands around the
    # split-adjusted closes, as the table holds them.
    closes = daily["close"].to_numpy()
    adjusted = np.where(daily["date"] < SPLIT_EX_DATE, closes / 2, closes)
    append_rows(warehouse, "technical_indicators", [
        {"symbol": symbol, "date": d, "rsi_14": 50.0 + 10 * np.sin(i / 3), "macd": 0.1 * np.sin(i / 5), "macd_signal": 0.0,
         "macd_hist": 0.1 * np.sin(i / 5), "bb_upper": c * 1.05, "bb_middle": c, "bb_lower": c * 0.95, "atr_14": 1.0, "obv": 0.0}
        for i, (d, c) in enumerate(zip(daily["date"], adjusted, strict=True))
    ])  # fmt: skip
    flagged = daily["date"].iloc[10]
    append_rows(warehouse, "anomalies", [
        {"ds": DS, "symbol": symbol, "date": flagged, "kind": "volume", "value": 1e7, "score": 4.2, "threshold": 3.5}
    ])  # fmt: skip
    append_rows(warehouse, "trend_summary", [{
        "ds": DS, "symbol": symbol, "adjust": "total_return", "start_date": START_DS, "end_date": DS, "bars": len(daily),
        "first_close": float(closes[0]), "last_close": float(closes[-1]), "total_return": 0.1234,
        "annualized_volatility": 0.25, "max_drawdown": -0.08,
    }])  # fmt: skip
    return {"warehouse": warehouse, "symbol": symbol, "default": default, "daily": daily, "anomaly_date": flagged}


def start_dashboard(warehouse: Path, log: Path, *params: str):
    """The dashboard of `warehouse` on a free port (`params`: more -p NAME VALUE pairs, e.g. a namespace)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "lib.dashboard", "-f", "params/local.yaml", "-p", "warehouse", str(warehouse),
         *params, "--port", str(port)],
        cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        if f"open {base}" in log.read_text():
            return server, base
        assert time.monotonic() < deadline, "the dashboard did not print its address within 90 s:\n" + log.read_text()
        time.sleep(0.2)


def stop(server) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dashboard_and_log(lake, tmp_path_factory):
    """The module's dashboard: its base URL and the file its output (the log) goes to."""
    log = tmp_path_factory.mktemp("dashboard-log") / "dashboard.log"
    server, base = start_dashboard(lake["warehouse"], log)
    yield base, log
    stop(server)


@pytest.fixture(scope="module")
def dashboard(dashboard_and_log):
    return dashboard_and_log[0]


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page; any console error or page error fails the test. `page.allowed` lists text to let through."""
    context = browser.new_context(viewport={"width": 1300, "height": 1100})
    opened = context.new_page()
    opened.errors, opened.allowed = [], []
    opened.on("console", lambda m: opened.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: opened.errors.append(f"page error: {e}"))
    yield opened
    errors = [e for e in opened.errors if not any(a in e for a in opened.allowed)]
    context.close()
    assert not errors, errors


def shown(page) -> dict:
    page.wait_for_selector("#chart[data-ready=true]", timeout=15_000)
    last = page.get_by_test_id("last-close")
    return {
        "symbol": page.get_by_test_id("symbol").inner_text(), "last_close": last.inner_text(),
        "last_close_value": float(last.get_attribute("data-value")), "bars": int(page.get_by_test_id("bar-count").inner_text()),
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# In the browser


@e2e
def test_default_view_opens_the_most_traded_symbol_over_the_data(page, dashboard, lake):
    started = time.monotonic()
    page.goto(dashboard)
    view = shown(page)
    elapsed = time.monotonic() - started
    daily = arrays_daily(lake["warehouse"], lake["default"])
    assert view["symbol"] == lake["default"]
    assert view["bars"] == len(daily)  # the default span (~6 months) covers the two months of data
    assert view["last_close_value"] == pytest.approx(daily["close"].iloc[-1])
    assert view["last_close"] == f"{daily['close'].iloc[-1]:.2f}"
    assert page.get_by_test_id("quality-summary").inner_text().startswith(f"run of {DS}")
    assert page.locator("[data-testid=quality] td.pass").count() >= 4
    assert page.get_by_test_id("missing-days").get_attribute("data-count") == "0"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "default.png"), full_page=True)
    assert elapsed < 10, f"the first view took {elapsed:.1f} s"


@e2e
def test_pick_a_symbol_change_span_and_adjustment(page, dashboard, lake):
    symbol, daily = lake["symbol"], lake["daily"]
    page.goto(dashboard)
    shown(page)
    with page.expect_navigation():
        page.get_by_test_id("symbol-picker").fill(symbol.lower())  # the picker takes any case
        page.keyboard.press("Tab")
    view = shown(page)
    assert view["symbol"] == symbol and f"symbol={symbol}" in page.url
    # The whole span holds the split's ex-date: bars after it are as traded, the split is marked and listed.
    assert view["bars"] == len(daily)
    assert view["last_close_value"] == pytest.approx(daily["close"].iloc[-1])
    assert "split 2:1" in page.get_by_test_id("actions").inner_text()
    shapes = page.evaluate("document.getElementById('chart').layout.shapes.map(s => s.name || '')")
    marks = [s for s in shapes if s.startswith("action")]
    assert marks == ["action test-split-1"]
    assert page.evaluate("Boolean(document.getElementById('chart').layout.yaxis4)")  # RSI and MACD panels
    assert str(lake["anomaly_date"]) in page.get_by_test_id("anomalies").inner_text()
    assert "12.34%" in page.get_by_test_id("trend").inner_text()
    page.screenshot(path=str(ARTIFACTS / "picked.png"), full_page=True)

    # A span that ends before the ex-date: every bar takes the split, close times 1/2.
    start, end = dt.date(2024, 1, 16), dt.date(2024, 2, 9)
    page.get_by_test_id("start").fill(start.isoformat())
    page.get_by_test_id("end").fill(end.isoformat())
    with page.expect_navigation():
        page.get_by_test_id("show").click()
    in_span = daily[(daily["date"] >= start) & (daily["date"] <= end)]
    view = shown(page)
    assert f"start={start}" in page.url and f"end={end}" in page.url
    assert view["bars"] == len(in_span)
    assert view["last_close_value"] == pytest.approx(in_span["close"].iloc[-1] / 2)
    assert page.get_by_test_id("actions").inner_text() == "none in the span"

    with page.expect_navigation():
        page.get_by_test_id("adjust").select_option("raw")
    view = shown(page)
    assert "adjust=raw" in page.url and f"start={start}" in page.url
    assert view["last_close_value"] == pytest.approx(in_span["close"].iloc[-1])
    # The Bollinger bands are on the split-adjusted series: not drawn over raw prices.
    names = page.evaluate("document.getElementById('chart').data.map(t => t.name)")
    assert "Bollinger upper" not in names and "MA 20" in names
    page.screenshot(path=str(ARTIFACTS / "raw-span.png"), full_page=True)


@e2e
def test_the_url_is_the_state(page, dashboard, lake):
    symbol = lake["symbol"]
    page.goto(f"{dashboard}?symbol={symbol}&start=2024-02-01&end=2024-02-29&adjust=total_return")
    view = shown(page)
    daily = lake["daily"]
    february = daily[(daily["date"] >= dt.date(2024, 2, 1)) & (daily["date"] <= dt.date(2024, 2, 29))]
    assert view["symbol"] == symbol and view["bars"] == len(february)
    assert page.get_by_test_id("adjust").input_value() == "total_return"
    assert page.get_by_test_id("start").input_value() == "2024-02-01"
    api = requests.get(f"{dashboard}api/view", params={"symbol": symbol, "start": "2024-02-01", "end": "2024-02-29"}, timeout=30)
    assert api.json()["bars"] == len(february) and api.json()["actions"] == 1


@e2e
@pytest.mark.parametrize(
    "query, says",
    [
        ("symbol=NOSUCH", "unknown symbol 'NOSUCH'"),
        ("start=2024-03-01&end=2024-02-01", "start (2024-03-01) is after end (2024-02-01)"),
        ("start=2024-13-45", "start must be a date YYYY-MM-DD, got '2024-13-45'"),
        ("adjust=dividends", "adjust must be one of raw, split, total_return, got 'dividends'"),
    ],
)
def test_bad_url_input_gets_a_clear_message(page, dashboard, query, says):
    page.allowed.append("status of 400")  # Chromium logs the page's own 400 status as a console error
    response = page.goto(f"{dashboard}?{query}")
    assert response.status == 400
    message = page.get_by_test_id("error")
    assert says in message.inner_text()
    assert "Traceback" not in page.content()
    assert page.get_by_test_id("symbol-picker").is_visible()  # the controls stay, to fix the view


@e2e
@pytest.mark.parametrize(
    "query, says",
    [
        ("start=0001-01-01", "start must be a day from 2000-01-03 to "),
        ("start=2000-01-02&end=2024-02-01", "start must be a day from 2000-01-03 to "),
        ("end=0001-07-01", "end must be a day from 2000-01-03 to "),
        ("start=2024-01-02&end=9999-12-31", "end must be a day from 2000-01-03 to "),
    ],
)
def test_dates_outside_the_calendar_are_refused_on_the_api(dashboard, lake, query, says):
    api = requests.get(f"{dashboard}api/view?symbol={lake['symbol']}&{query}", timeout=30)
    assert api.status_code == 400 and api.headers["Content-Type"].startswith("application/json")
    assert says in api.json()["error"] and "(the NYSE calendar this dashboard knows)" in api.json()["error"]


@e2e
def test_a_date_outside_the_calendar_is_a_clear_page(page, dashboard, lake):
    page.allowed.append("status of 400")
    response = page.goto(f"{dashboard}?symbol={lake['symbol']}&start=0001-01-01")
    assert response.status == 400
    message = page.get_by_test_id("error").inner_text()
    assert "start must be a day from 2000-01-03 to " in message and "got '0001-01-01'" in message
    assert "OverflowError" not in page.content() and page.get_by_test_id("start").input_value() == "0001-01-01"


@e2e
def test_only_loopback_host_names_are_answered(dashboard):
    port = dashboard.rsplit(":", 1)[1].strip("/")
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert requests.get(f"{dashboard}api/view", headers={"Host": host}, timeout=30).status_code == 200, host
    # DNS rebinding: a hostile page's own name resolved to 127.0.0.1 after the browser loaded the page.
    for host in (f"rebind.example:{port}", "rebind.example", f"127.0.0.1:{int(port) + 1}", f"127.0.0.1.nip.io:{port}"):
        for path in ("", "api/view", "no-such-page"):
            refused = requests.get(f"{dashboard}{path}", headers={"Host": host}, timeout=30)
            assert refused.status_code == 421, (host, path)
            assert f"answers only to Host 127.0.0.1:{port} or localhost:{port}" in refused.text
            assert "symbol" not in refused.text  # nothing of the warehouse


@e2e
def test_every_response_carries_the_security_headers(dashboard, lake):
    from lib.dashboard.page import PLOTLY_URL, SCRIPT_URL

    port = dashboard.rsplit(":", 1)[1].strip("/")
    responses = {
        "page": requests.get(dashboard, timeout=30),
        "refused page": requests.get(f"{dashboard}?symbol=NOSUCH", timeout=30),
        "api": requests.get(f"{dashboard}api/view", timeout=30),
        "plotly.js": requests.get(f"{dashboard}{PLOTLY_URL[1:]}", timeout=30),
        "page script": requests.get(f"{dashboard}{SCRIPT_URL[1:]}", timeout=30),
        "not found": requests.get(f"{dashboard}no-such-page", timeout=30),
        "wrong host": requests.get(dashboard, headers={"Host": f"rebind.example:{port}"}, timeout=30),
    }
    assert [r.status_code for r in responses.values()] == [200, 400, 200, 200, 200, 404, 421]
    for name, response in responses.items():
        policy = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy, name
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0], name
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("Referrer-Policy") == "no-referrer", name
    assert "<script>" not in responses["page"].text  # no inline script for the policy to block


@e2e
def test_the_page_cannot_be_framed(page, dashboard):
    page.allowed += ["Refused to frame", "frame-ancestors"]  # Chromium's own report of the refusal
    page.set_content(f'<iframe id="framed" src="{dashboard}" width="600" height="400"></iframe>')
    page.wait_for_timeout(1500)
    framed = page.frame_locator("#framed")
    assert framed.locator("[data-testid=symbol]").count() == 0


@e2e
def test_client_errors_are_one_log_line_never_a_traceback(dashboard_and_log, lake):
    import socket as sockets

    dashboard, log = dashboard_and_log
    port = int(dashboard.rsplit(":", 1)[1].strip("/"))
    before = log.read_text()
    statuses = [
        requests.get(f"{dashboard}?symbol={lake['symbol']}&start=0001-01-01", timeout=30).status_code,
        requests.get(f"{dashboard}api/view?end=0001-01-01", timeout=30).status_code,
        requests.get(f"{dashboard}?x={'A' * 9000}", timeout=30).status_code,  # a request line over 8 KB
        requests.get(dashboard, headers={"X-Filler": "B" * 9000}, timeout=30).status_code,  # a header over 8 KB
    ]
    with sockets.create_connection(("127.0.0.1", port), timeout=30) as raw:  # not HTTP at all
        raw.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        raw.recv(1000)
    assert statuses[:2] == [400, 400] and all(400 <= s < 500 for s in statuses[2:]), statuses
    deadline = time.monotonic() + 5
    while log.read_text().count("\n") - before.count("\n") < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    written = log.read_text()[len(before) :]
    assert "Traceback" not in written and "OverflowError" not in written, written[:3000]
    lines = written.splitlines()
    assert 4 <= len(lines) <= 5, lines  # one line per client error (the non-HTTP bytes may be logged at debug only)
    assert all(len(line) < 600 for line in lines), [len(line) for line in lines]
    assert sum("LineTooLong" in line for line in lines) == 2, lines


@e2e
def test_missing_warehouse_says_run_make_run(page, tmp_path):
    server, base = start_dashboard(tmp_path / "no-warehouse", tmp_path / "dashboard.log")
    try:
        page.allowed.append("status of 503")
        response = page.goto(base)
        assert response.status == 503
        assert "run `make run` first" in page.get_by_test_id("error").inner_text()
    finally:
        stop(server)


# --------------------------------------------------------------------------------------------
# Without a browser or a pipeline: the data layer and the page on hand-made frames


def test_moving_averages_are_means_of_the_last_closes():
    from lib.dashboard.data import with_moving_averages

    bars = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=4).date, "close": [1.0, 2.0, 3.0, 6.0]})
    result = with_moving_averages(bars, windows=(2, 3))
    assert result["ma_2"].tolist()[1:] == [1.5, 2.5, 4.5] and np.isnan(result["ma_2"].iloc[0])
    assert result["ma_3"].tolist()[2:] == [2.0, 11 / 3]
    assert "ma_2" not in bars  # a new frame


def test_missing_days_are_trading_days_without_a_close():
    from lib.dashboard.data import missing_days

    # 2024-01-15 is Martin Luther King Jr. Day: no session, so not missing.
    bars = pd.DataFrame({"date": [dt.date(2024, 1, 12), dt.date(2024, 1, 16), dt.date(2024, 1, 17)], "close": [1.0, None, 2.0]})
    assert missing_days(bars, dt.date(2024, 1, 11), dt.date(2024, 1, 18)) == [
        dt.date(2024, 1, 11), dt.date(2024, 1, 16), dt.date(2024, 1, 18)
    ]  # fmt: skip
    assert missing_days(bars, dt.date(2024, 1, 18), dt.date(2024, 1, 11)) == []


def test_missing_warehouse_is_a_clear_error(tmp_path):
    from lib.dashboard.data import Lake, WarehouseMissingError
    from lib.dashboard.server import page_response

    lake = Lake(config_for(tmp_path / "nowhere"))
    with pytest.raises(WarehouseMissingError, match="run `make run` first"):
        lake.universe()
    status, body = page_response(lake, {})
    assert status == 503 and "make run" in body and not (tmp_path / "nowhere" / "catalog.db").exists()


def test_page_of_a_hand_made_view():
    from lib.dashboard.data import QUALITY_COLUMNS, TREND_COLUMNS, Universe, View, ViewRequest, _empty
    from lib.dashboard.page import figure, render_view

    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    bars = pd.DataFrame({"symbol": "ABC", "date": days, "open": [10.0, 11.0], "high": [11.0, 12.0], "low": [9.0, 10.0],
                         "close": [10.5, 0.123456], "volume": [100.0, 200.0], "vwap": [10.2, 11.1],
                         "ma_20": [None, None], "ma_50": [None, None]})  # fmt: skip
    actions = pd.DataFrame([{"action_type": "dividend", "ex_date": days[1], "split_from": None, "split_to": None,
                             "cash_amount": 0.25, "currency": "USD", "pay_date": None, "source_id": "d1"}])  # fmt: skip
    universe = Universe(pd.DataFrame({"ticker": ["ABC"], "name": ["<ABC & Co>"]}), days[0], days[1], "ABC", 1)
    request = ViewRequest("ABC", days[0], days[1], "total_return")
    view = View(request, bars, _empty(["symbol", "date"]), _empty(["date", "kind", "value", "score", "threshold"]), actions,
                _empty(TREND_COLUMNS), _empty(QUALITY_COLUMNS), [],
                ["trend_summary: no such table in this warehouse yet"])  # fmt: skip
    html = render_view(universe, view)
    assert 'data-testid="last-close" data-value="0.123456">0.1235<' in html
    assert "&lt;ABC &amp; Co&gt;" in html and "<ABC & Co>" not in html
    assert "dividend 0.25 USD" in html and "no such table" in html
    spec = figure(view)
    assert [t["name"] for t in spec["data"]] == ["ABC", "MA 20", "MA 50", "volume"]  # no indicator panels
    assert spec["data"][1]["y"] == [None, None] and spec["layout"]["shapes"][0]["x0"] == "2024-01-03"


def test_page_escapes_every_value_it_shows():
    """Ticker names, notes, quality details and a refused URL's values reach the page as text, never as markup."""
    import html as html_module
    import json
    import re

    from lib.dashboard.data import TREND_COLUMNS, Universe, View, ViewRequest, _empty
    from lib.dashboard.page import figure, render_message, render_view

    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)></div>'
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    bars = pd.DataFrame({"symbol": "ABC", "date": days, "open": [10.0, 11.0], "high": [11.0, 12.0], "low": [9.0, 10.0],
                         "close": [10.5, 11.5], "volume": [100.0, 200.0], "vwap": [10.2, 11.1],
                         "ma_20": [None, None], "ma_50": [None, None]})  # fmt: skip
    anomalies = pd.DataFrame([{"date": days[1], "kind": hostile, "value": 1.0, "score": 4.0, "threshold": 3.0}])
    actions = pd.DataFrame([{"action_type": "dividend", "ex_date": days[1], "split_from": None, "split_to": None,
                             "cash_amount": 0.25, "currency": hostile, "pay_date": None, "source_id": hostile}])  # fmt: skip
    quality = pd.DataFrame([{"ds": days[1], "table_name": hostile, "check_name": hostile, "severity": "error",
                             "status": hostile, "failed_rows": 1, "details": hostile}])  # fmt: skip
    universe = Universe(pd.DataFrame({"ticker": ["ABC"], "name": [hostile]}), days[0], days[1], "ABC", 1)
    view = View(ViewRequest("ABC", days[0], days[1], "split"), bars, _empty(["symbol", "date"]), anomalies, actions,
                _empty(TREND_COLUMNS), quality, [], [hostile])  # fmt: skip
    pages = {
        "view": render_view(universe, view),
        "refused": render_message(
            hostile, hostile, universe, {"symbol": hostile, "start": hostile, "end": hostile, "adjust": hostile}
        ),  # fmt: skip
        "no warehouse": render_message("No data yet", hostile),
    }
    for name, page in pages.items():
        scripts = re.findall(r"<script[^>]*>", page)  # plotly.js and the page's script, nothing inline
        assert len(scripts) == 2 and all(tag.startswith('<script src="/static/') for tag in scripts), (name, scripts)
        assert "<img" not in page and "</div></div>" not in page and "&lt;script&gt;alert(1)" in page, name
    assert pages["view"].count("&lt;script&gt;alert(1)") >= 8  # name, notes, quality, anomalies, actions, datalist
    assert pages["refused"].count("&lt;script&gt;alert(1)") >= 5  # title, message, and the form's echoed values
    embedded = re.search(r'data-figure="([^"]*)"', pages["view"]).group(1)
    assert json.loads(html_module.unescape(embedded)) == json.loads(json.dumps(figure(view)))


def test_a_change_of_ticker_is_marked_as_an_action_is():
    """A hand-made view across a rename: a dotted line and 'OLD → NEW' on the day, the header names it, each candle says
    the ticker it traded under, and an old ticker the picker does not offer is still one it submits."""
    from lib.dashboard.data import QUALITY_COLUMNS, TREND_COLUMNS, Universe, View, ViewRequest, _empty
    from lib.dashboard.page import figure, render_view

    days = [dt.date(2024, 6, 5), dt.date(2024, 6, 6)]
    bars = pd.DataFrame({"symbol": ["OLD", "NEW"], "date": days, "open": [10.0, 11.0], "high": [11.0, 12.0],
                         "low": [9.0, 10.0], "close": [10.5, 11.5], "volume": [100.0, 200.0], "vwap": [10.2, 11.1],
                         "ma_20": [None, None], "ma_50": [None, None]})  # fmt: skip
    universe = Universe(pd.DataFrame({"ticker": ["NEW"], "name": ["New Co"]}), days[0], days[1], "NEW", 1,
                        frozenset({"OLD", "NEW"}))  # fmt: skip
    assert universe.knows("OLD") and not universe.knows("GONE")
    view = View(ViewRequest("NEW", days[0], days[1], "split"), bars, _empty(["symbol", "date"]),
                _empty(["date", "kind", "value", "score", "threshold"]), _empty(["action_type", "ex_date", "source_id"]),
                _empty(TREND_COLUMNS), _empty(QUALITY_COLUMNS), [], [], [("OLD", "NEW", days[1])])  # fmt: skip
    spec = figure(view)
    assert [(s["name"], s["x0"]) for s in spec["layout"]["shapes"]] == [("ticker change OLD → NEW", "2024-06-06")]
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["OLD → NEW"]
    assert spec["data"][0]["text"] == ["traded as OLD", "traded as NEW"]
    html = render_view(universe, view)
    assert "ticker change OLD → NEW on 2024-06-06" in html
    assert 'data-held="OLD"' in html
