"""Reads by ticker resolve to a security (contract: "One security, many tickers"), on a warehouse the real pipeline
wrote from the simulator (100 tickers, seed 42): DXSB renamed CWHG on 2024-06-06; VIHY delisted on 2024-04-24 and
listed again by another company on 2024-08-20.

The reference is the simulator's own bars (`lib.simulator.bar`, as traded) under the ticker it served each day, and its
own securities; the split added by hand is applied by hand. The dashboard is checked in a headless Chromium, as
tests/test_dashboard.py does.
"""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pytest

from lib import prices as prices_command
from lib.analytics import prices
from lib.core.trading_days import trading_days
from lib.ingestion.rest_client import ClientSettings
from lib.running import steps
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess, bar, securities, ticker_changes
from lib.storage.catalog import pyiceberg_catalog
from tests.test_dashboard import browser, page, shown, start_dashboard, stop  # noqa: F401 (fixtures: browser, page)

KEY = "identity-reads-key-5d2a"
TICKERS, SEED, NAMESPACE = 100, 42, "identity"
RENAME = dt.date(2024, 6, 6)  # DXSB -> CWHG
DELISTED, RELISTED = dt.date(2024, 4, 24), dt.date(2024, 8, 20)  # VIHY: the old company, then another
RUNS = ((dt.date(2024, 4, 22), dt.date(2024, 4, 26)), (dt.date(2024, 6, 3), dt.date(2024, 6, 12)),
        (dt.date(2024, 8, 19), dt.date(2024, 8, 23)))  # fmt: skip
JUNE = RUNS[1]
SPLIT_EX = dt.date(2024, 6, 10)  # a 1-for-4 split under the new ticker, added by hand


def _config(warehouse, start: dt.date = RUNS[0][0], ds: dt.date = RUNS[-1][1]) -> RunConfig:
    return RunConfig.from_params(warehouse=str(warehouse), namespace=NAMESPACE, ds=str(ds), start_ds=str(start),
                                 strategy="grouped", simulator_tickers=TICKERS, wap_branch="")  # fmt: skip


@pytest.fixture(scope="module")
def config(spark, warehouse):
    """Three ingest + rollup runs, in order: around VIHY's delisting, across the rename, around VIHY's new listing."""
    with SimulatorProcess(tickers=TICKERS, seed=SEED, api_key=KEY) as sim:
        settings = ClientSettings(base_url=sim.base_url, api_key=KEY, max_attempts=2)
        for start, ds in RUNS:
            run_config = _config(warehouse, start, ds)
            steps.run_ingest(spark, run_config, settings)
            steps.run_rollup(spark, run_config, keep_snapshots=None)
    config = _config(warehouse)
    import pyarrow as pa

    actions = pyiceberg_catalog(config).load_table(f"{NAMESPACE}.corporate_actions")
    actions.append(pa.Table.from_pylist([{
        "symbol": "CWHG", "action_type": "split", "ex_date": SPLIT_EX, "split_from": 1.0, "split_to": 4.0,
        "source_id": "test-split-cwhg", "first_seen_ds": SPLIT_EX, "last_seen_ds": SPLIT_EX,
    }], schema=actions.schema().as_arrow()))  # fmt: skip
    return config


def figi(ticker: str, on: dt.date) -> str:
    """The composite FIGI of the security that held `ticker` on `on`, from the simulator's own records."""
    held = [p for p in securities(TICKERS, SEED) if p["ticker"] == ticker and p["valid_from"] <= on
            and (p["valid_to"] is None or on < p["valid_to"])]  # fmt: skip
    assert len(held) == 1, held
    return held[0]["composite_figi"]


def simulated(days_and_tickers, factor=lambda day: 1.0) -> pd.DataFrame:
    """The simulator's as-traded bars of (day, ticker) pairs, as prices.read returns them (prices times `factor`)."""
    rows = []
    for day, ticker in days_and_tickers:
        served = bar(ticker, day, TICKERS, SEED, adjusted=False)
        if served is None:
            continue
        f = factor(day)
        rows.append({"symbol": ticker, "date": day, "open": served["o"] * f, "high": served["h"] * f, "low": served["l"] * f,
                     "close": served["c"] * f, "volume": served["v"] / f, "vwap": served["vw"] * f,
                     "security_id": figi(ticker, day)})  # fmt: skip
    return pd.DataFrame(rows, columns=list(prices.READ_COLUMNS))


def assert_bars(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(expected) > 0
    assert list(actual.columns) == list(prices.READ_COLUMNS)
    pd.testing.assert_frame_equal(actual.reset_index(drop=True), expected, check_dtype=False, rtol=1e-12, atol=0)


def renamed_security_in_june() -> pd.DataFrame:
    return simulated([(d, "DXSB" if d < RENAME else "CWHG") for d in trading_days(*JUNE)])


def test_the_runs_hold_a_rename_and_a_reused_ticker():
    """The scenario, from the simulator's own records (an independent source)."""
    assert [(c["old_ticker"], c["new_ticker"], c["date"]) for c in ticker_changes(TICKERS, SEED) if c["date"] <= RUNS[-1][1]] == [
        ("DXSB", "CWHG", RENAME)
    ]
    vihy = sorted((p["valid_from"], p["valid_to"]) for p in securities(TICKERS, SEED) if p["ticker"] == "VIHY")
    assert [v[1] for v in vihy[:-1]] == [DELISTED] and vihy[-1] == (RELISTED, None)
    assert figi("VIHY", DELISTED - dt.timedelta(days=1)) != figi("VIHY", RELISTED)


@pytest.mark.parametrize("ticker", ["CWHG", "DXSB", "cwhg"])
def test_the_new_and_the_old_ticker_read_the_whole_security(config, ticker):
    actual = prices.read(config, [ticker], *JUNE, adjust="raw")
    assert_bars(actual, renamed_security_in_june())
    assert actual["symbol"].iloc[0] == "DXSB" and actual["symbol"].iloc[-1] == "CWHG"  # the ticker as traded
    assert actual.attrs["warnings"] == [] and actual.attrs["unknown_symbols"] == []
    assert actual.attrs["ticker_changes"] == [(figi("CWHG", RENAME), "DXSB", "CWHG", RENAME)]


def test_two_tickers_of_one_security_give_its_bars_once_and_other_securities_follow(config):
    actual = prices.read(config, ["CWHG", "DXSB", "VIHY"], JUNE[0], RELISTED + dt.timedelta(days=3), adjust="raw")
    assert actual.attrs["securities"]["CWHG"] == actual.attrs["securities"]["DXSB"] == figi("CWHG", RENAME)
    renamed = actual[actual["security_id"] == figi("CWHG", RENAME)]
    assert not renamed.duplicated(["date"]).any()
    stored_days = trading_days(*JUNE) + trading_days(*RUNS[2])  # the days the warehouse holds in the span
    expected = simulated([(d, "DXSB" if d < RENAME else "CWHG") for d in stored_days])
    assert_bars(actual.iloc[: len(renamed)], expected)  # the first security asked for comes first
    assert set(actual.iloc[len(renamed) :]["security_id"]) == {figi("VIHY", RELISTED)}


def test_a_split_under_the_new_ticker_adjusts_the_bars_traded_under_the_old_one(config):
    actual = prices.read(config, ["DXSB"], *JUNE)  # split-adjusted, the default
    expected = simulated([(d, "DXSB" if d < RENAME else "CWHG") for d in trading_days(*JUNE)],
                         factor=lambda day: 0.25 if day < SPLIT_EX else 1.0)  # fmt: skip
    assert_bars(actual, expected)
    # As of a day before the ex-date, nothing is adjusted.
    assert_bars(prices.read(config, ["DXSB"], *JUNE, as_of=SPLIT_EX - dt.timedelta(days=1)), renamed_security_in_june())


def test_a_reused_ticker_reads_the_company_that_held_it_at_the_end_of_the_span(config):
    after = prices.read(config, ["VIHY"], RUNS[2][0], RUNS[2][1], adjust="raw")
    assert_bars(after, simulated([(d, "VIHY") for d in trading_days(RELISTED, RUNS[2][1])]))
    # Over a span that holds both companies, only the one holding it last: never the old company's April bars.
    both = prices.read(config, ["VIHY"], RUNS[0][0], RUNS[2][1], adjust="raw")
    assert_bars(both, after)
    assert set(both["security_id"]) == {figi("VIHY", RELISTED)}
    # A span that ends before the new listing reads the old company alone.
    before = prices.read(config, ["VIHY"], RUNS[0][0], RUNS[0][1], adjust="raw")
    assert_bars(before, simulated([(d, "VIHY") for d in trading_days(RUNS[0][0], DELISTED - dt.timedelta(days=1))]))
    assert set(before["security_id"]) == {figi("VIHY", RUNS[0][0])}


def test_unknown_tickers_are_still_named(config):
    frame = prices.read(config, ["CWHG", "NOPE"], *JUNE, adjust="raw")
    assert frame.attrs["unknown_symbols"] == ["NOPE"]
    assert frame.attrs["warnings"] == [
        f"NOPE: no prices on any day in {NAMESPACE}.monthly_stock_prices of the warehouse {config.warehouse}: check the ticker"
    ]
    assert_bars(frame, renamed_security_in_june())


def test_the_cli_prints_the_old_tickers_bars_under_the_new_one(config, capsys):
    code = prices_command.main(["CWHG", "--start", str(JUNE[0]), "--end", str(JUNE[1]), "--adjust", "raw",
                                "-p", "warehouse", config.warehouse, "-p", "namespace", NAMESPACE])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "symbol,date,open,high,low,close,volume,vwap"
    printed = pd.read_csv(io.StringIO(out), parse_dates=["date"])
    printed["date"] = printed["date"].dt.date
    expected = renamed_security_in_june().drop(columns="security_id")
    pd.testing.assert_frame_equal(printed, expected, check_dtype=False, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# The dashboard, in a browser


CHART_MARKS = """(() => { const l = document.getElementById('chart').layout;
  return {shapes: l.shapes.map(s => [s.name || '', s.x0]), notes: l.annotations.map(a => a.text)}; })()"""
CANDLES = "(() => { const t = document.getElementById('chart').data[0]; return {x: t.x, open: t.open, text: t.text}; })()"


@pytest.fixture(scope="module")
def dashboard(config, tmp_path_factory):
    log = tmp_path_factory.mktemp("identity-dashboard") / "dashboard.log"
    server, base = start_dashboard(config.warehouse, log, "-p", "namespace", NAMESPACE)
    yield base
    stop(server)


@pytest.mark.e2e
@pytest.mark.parametrize("ticker", ["CWHG", "DXSB"])
def test_the_dashboard_marks_the_change_and_shows_the_old_tickers_bars(page, dashboard, ticker):  # noqa: F811
    page.goto(f"{dashboard}?symbol={ticker}&start={JUNE[0]}&end={JUNE[1]}&adjust=raw")
    view = shown(page)
    expected = renamed_security_in_june()
    assert view["symbol"] == ticker and view["bars"] == len(expected)
    assert view["last_close_value"] == pytest.approx(expected["close"].iloc[-1], rel=1e-12)
    assert page.get_by_test_id("ticker-changes").inner_text() == f"ticker change DXSB → CWHG on {RENAME}"
    layout = page.evaluate(CHART_MARKS)
    assert ["ticker change DXSB → CWHG", str(RENAME)] in layout["shapes"] and "DXSB → CWHG" in layout["notes"]
    candles = page.evaluate(CANDLES)
    assert candles["x"][0] == str(JUNE[0]) and candles["open"][0] == pytest.approx(expected["open"].iloc[0], rel=1e-12)
    assert candles["text"][0] == "traded as DXSB" and candles["text"][-1] == "traded as CWHG"


@pytest.mark.e2e
def test_an_old_ticker_typed_in_the_picker_opens_its_security(page, dashboard):  # noqa: F811
    page.goto(f"{dashboard}?symbol=CWHG&start={JUNE[0]}&end={JUNE[1]}&adjust=raw")
    shown(page)
    with page.expect_navigation():
        page.get_by_test_id("symbol-picker").fill("dxsb")
        page.keyboard.press("Tab")
    view = shown(page)
    assert view["symbol"] == "DXSB" and view["bars"] == len(renamed_security_in_june())
    assert page.get_by_test_id("ticker-changes").is_visible()
