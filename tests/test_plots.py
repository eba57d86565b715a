"""Report figures: the right axes, titles and labels, the input's values on screen, and empty inputs."""

from __future__ import annotations

import datetime as dt

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from lib.presentation import plots


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def tick_labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


def line_by_label(ax, label):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def as_dates(line) -> list[dt.date]:
    return [mdates.num2date(x).date() for x in mdates.date2num(line.get_xdata())]


@pytest.fixture
def daily() -> pd.DataFrame:
    """Two symbols as Spark's toPandas gives them: python dates, a missing day for BBB, nulls in the MAs."""
    return pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "AAA", "BBB", "BBB"],
            "date": [d("2024-03-01"), d("2024-03-04"), d("2024-03-05"), d("2024-03-01"), d("2024-03-05")],
            "close": [10.0, 12.0, 9.0, 50.0, 55.0],
            "ma_20": [None, 11.0, 10.5, None, 52.5],
            "ma_50": [None, None, None, None, None],
            "ma_200": [None, None, None, None, None],
            "drawdown": [0.0, 0.0, -0.25, 0.0, 0.0],
            "rolling_volatility": [None, 0.3, 0.4, None, 0.1],
            "volume": [100.0, 110.0, 500.0, 1000.0, 900.0],
            "is_anomaly": [False, False, True, False, False],
        }
    )


# ------------------------------------------------------------------------------------------- trends


def test_price_with_moving_averages_one_panel_per_symbol(daily):
    fig = plots.price_with_moving_averages(daily)

    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert fig.get_suptitle() == "Close price and moving averages"
    aaa, bbb = fig.axes
    assert (aaa.get_title(), bbb.get_title()) == ("AAA", "BBB")
    assert aaa.get_ylabel() == "Price (USD)"
    assert [line.get_label() for line in aaa.get_lines()] == ["close", "20-day MA", "50-day MA", "200-day MA"]
    close = line_by_label(aaa, "close")
    assert list(close.get_ydata()) == [10.0, 12.0, 9.0]
    assert as_dates(close) == [d("2024-03-01"), d("2024-03-04"), d("2024-03-05")]
    np.testing.assert_array_equal(line_by_label(bbb, "close").get_ydata(), [50.0, 55.0])
    np.testing.assert_array_equal(line_by_label(aaa, "20-day MA").get_ydata(), [np.nan, 11.0, 10.5])
    assert isinstance(aaa.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    assert fig.legends, "a shared legend names the series"


def test_price_with_moving_averages_sorts_dates_and_caps_symbols(daily):
    shuffled = daily.sample(frac=1.0, random_state=3)

    fig = plots.price_with_moving_averages(shuffled, max_symbols=1)

    assert len(fig.axes) == 1
    assert list(line_by_label(fig.axes[0], "close").get_ydata()) == [10.0, 12.0, 9.0]


def test_monthly_returns_heatmap_cells_colours_and_labels():
    monthly = pd.DataFrame(
        {
            "symbol": ["BBB", "AAA", "AAA"],
            "month_start": [d("2024-02-01"), d("2024-02-01"), d("2024-03-01")],
            "monthly_return": [-0.05, 0.1, 0.25],
        }
    )

    fig = plots.monthly_returns_heatmap(monthly)

    assert len(fig.axes) == 2  # the grid and its colourbar
    ax = fig.axes[0]
    assert ax.get_title() == "Monthly returns"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Month", "Symbol")
    assert fig.axes[1].get_ylabel() == "Monthly return (%)"
    (image,) = ax.get_images()
    grid = image.get_array()
    np.testing.assert_array_equal(grid.data[0], [0.1, 0.25])  # AAA: Feb, Mar
    assert grid.data[1][0] == -0.05 and grid.mask[1][1]  # BBB has no March
    norm = image.norm
    assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0.0
    assert tick_labels(ax.yaxis) == ["AAA", "BBB"]
    assert tick_labels(ax.xaxis) == ["2024-02", "2024-03"]
    assert texts(ax) == ["10.0%", "25.0%", "-5.0%"]


def test_drawdown_curves_one_line_per_symbol_in_percent(daily):
    fig = plots.drawdown_curves(daily)

    (ax,) = fig.axes
    assert ax.get_title() == "Drawdown from running peak"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Date", "Drawdown (%)")
    assert list(line_by_label(ax, "AAA").get_ydata()) == [0.0, 0.0, -0.25]
    assert list(line_by_label(ax, "BBB").get_ydata()) == [0.0, 0.0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["AAA", "BBB"]
    # The legend sits right of the plotting area, never over the lines.
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1


def test_line_charts_sort_each_symbol_by_date(daily):
    shuffled = daily.iloc[[2, 4, 0, 3, 1]]

    ax = plots.drawdown_curves(shuffled).axes[0]

    aaa = line_by_label(ax, "AAA")
    assert as_dates(aaa) == [d("2024-03-01"), d("2024-03-04"), d("2024-03-05")]
    assert list(aaa.get_ydata()) == [0.0, 0.0, -0.25]


def test_small_multiples_drop_the_unused_grid_cells(daily):
    four_symbols = pd.concat([daily.assign(symbol=name) for name in ["AAA", "BBB", "CCC", "DDD"]])

    fig = plots.volume_with_anomalies(four_symbols)

    # A 2 x 3 grid holds four symbols: the two spare cells are removed, not left as empty frames.
    assert [ax.get_title() for ax in fig.axes] == ["AAA", "BBB", "CCC", "DDD"]
    assert len(plots.price_with_moving_averages(four_symbols).axes) == 4


def test_rolling_volatility_chart(daily):
    fig = plots.rolling_volatility_chart(daily)

    (ax,) = fig.axes
    assert ax.get_title() == "Rolling volatility of daily returns"
    assert ax.get_ylabel() == "Annualised volatility (%)"
    np.testing.assert_array_equal(line_by_label(ax, "AAA").get_ydata(), [np.nan, 0.3, 0.4])
    np.testing.assert_array_equal(line_by_label(ax, "BBB").get_ydata(), [np.nan, 0.1])


def test_volume_with_anomalies_marks_anomalous_days(daily):
    fig = plots.volume_with_anomalies(daily)

    assert len(fig.axes) == 2
    aaa = fig.axes[0]
    assert aaa.get_title() == "AAA"
    assert aaa.get_ylabel() == "Volume (shares)"
    assert list(line_by_label(aaa, "volume").get_ydata()) == [100.0, 110.0, 500.0]
    (markers,) = [c for c in aaa.collections if isinstance(c, PathCollection)]
    ((x, y),) = markers.get_offsets()
    assert (mdates.num2date(x).date(), y) == (d("2024-03-05"), 500.0)
    (bbb_markers,) = [c for c in fig.axes[1].collections if isinstance(c, PathCollection)]
    assert len(bbb_markers.get_offsets()) == 0


def test_correlation_heatmap_fixed_scale_and_labels():
    corr = pd.DataFrame(
        [[1.0, -0.5], [-0.5, 1.0]],
        index=pd.Index(["AAA", "BBB"], name="symbol"),
        columns=pd.Index(["AAA", "BBB"], name="symbol"),
    )

    fig = plots.correlation_heatmap(corr)

    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_title() == "Correlation of daily returns"
    (image,) = ax.get_images()
    np.testing.assert_array_equal(image.get_array().data, corr.to_numpy())
    assert (image.norm.vmin, image.norm.vmax) == (-1.0, 1.0)
    assert texts(ax) == ["1.00", "-0.50", "-0.50", "1.00"]
    assert tick_labels(ax.xaxis) == ["AAA", "BBB"]


def test_top_movers_chart_recent_months_coloured_by_direction():
    movers = pd.DataFrame(
        {
            "month_start": [d("2024-01-01")] + [d("2024-02-01")] * 2 + [d("2024-03-01")] * 3,
            "direction": ["gainer", "gainer", "loser", "gainer", "loser", "loser"],
            "rank": [1, 1, 1, 1, 1, 2],
            "symbol": ["OLD", "AAA", "BBB", "AAA", "CCC", "BBB"],
            "monthly_return": [0.5, 0.2, -0.1, 0.3, -0.2, -0.05],
        }
    )

    fig = plots.top_movers_chart(movers, months=2)

    assert len(fig.axes) == 2
    february, march = fig.axes
    assert (february.get_title(), march.get_title()) == ("February 2024", "March 2024")
    assert march.get_xlabel() == "Monthly return (%)"
    widths = [bar.get_width() for bar in march.patches]
    assert widths == [-0.2, -0.05, 0.3]  # sorted by return, most negative at the bottom
    assert tick_labels(march.yaxis) == ["CCC", "BBB", "AAA"]
    colours = [bar.get_facecolor()[:3] for bar in march.patches]
    red, green = (0.776, 0.157, 0.157), (0.180, 0.490, 0.196)
    np.testing.assert_allclose(colours, [red, red, green], atol=0.01)


# ------------------------------------------------------------------------------------------- pipeline


def test_ingest_coverage_bars_and_calls_panels():
    bars_per_day = pd.DataFrame({"date": [d("2024-03-04"), d("2024-03-01")], "bars": [98, 100]})

    fig = plots.ingest_coverage(bars_per_day, {"grouped": 2, "tickers": 1})

    bars_ax, calls_ax = fig.axes
    assert bars_ax.get_title() == "Bars per day"
    assert bars_ax.get_ylabel() == "Bars (count)"
    assert [bar.get_height() for bar in bars_ax.patches] == [100, 98]
    assert calls_ax.get_title() == "API calls by endpoint"
    assert [bar.get_width() for bar in calls_ax.patches] == [1, 2]
    assert tick_labels(calls_ax.yaxis) == ["tickers", "grouped"]


def test_ingest_coverage_accepts_a_calls_frame_and_no_calls():
    bars_per_day = pd.DataFrame({"date": [d("2024-03-01")], "bars": [5]})
    calls = pd.DataFrame({"endpoint": ["range", "range", "tickers"], "calls": [3, 4, 1]})

    fig = plots.ingest_coverage(bars_per_day, calls)
    assert [bar.get_width() for bar in fig.axes[1].patches] == [1, 7]

    no_calls = plots.ingest_coverage(bars_per_day, {})
    assert "No data" in texts(no_calls.axes[1])


def test_exploded_series_sample_breaks_lines_at_null_values():
    exploded = pd.DataFrame(
        {
            "symbol": ["AAA"] * 4 + ["BBB"] + ["AAA"],
            "date": [d("2024-03-01"), d("2024-03-02"), d("2024-03-03"), d("2024-03-04"), d("2024-03-01"), d("2024-03-01")],
            "metric_name": ["close"] * 5 + ["volume"],
            "value": [10.0, None, None, 11.0, 20.0, 999.0],
        }
    )

    fig = plots.exploded_series_sample(exploded)

    (ax,) = fig.axes
    assert ax.get_title() == "Exploded daily series: close"
    assert ax.get_ylabel() == "Price (USD)"
    aaa = line_by_label(ax, "AAA")
    np.testing.assert_array_equal(aaa.get_ydata(), [10.0, np.nan, np.nan, 11.0])
    assert aaa.get_marker() == "o"
    assert list(line_by_label(ax, "BBB").get_ydata()) == [20.0]


def test_quality_checks_table_colours_rows_by_outcome():
    checks = pd.DataFrame(
        {
            "check_name": ["duplicates", "ohlc_consistency", "null_values"],
            "table_name": ["stock_prices"] * 3,
            "severity": ["error", "warn", "error"],
            "status": ["pass", "fail", "fail"],
            "failed_rows": [0, 2, 1234],
        }
    )

    fig = plots.quality_checks_table(checks)

    (ax,) = fig.axes
    assert ax.get_title() == "Quality checks: 1 of 3 passed"
    (table,) = ax.tables
    cells = table.get_celld()
    # Rows are sorted by table and check: duplicates, null_values, ohlc_consistency.
    assert [cells[row, 1].get_text().get_text() for row in (1, 2, 3)] == [
        "duplicates",
        "null_values",
        "ohlc_consistency",
    ]
    assert cells[2, 4].get_text().get_text() == "1,234"
    fills = [cells[row, 0].get_facecolor()[:3] for row in (1, 2, 3)]
    np.testing.assert_allclose(
        fills, [(0.784, 0.902, 0.788), (1.0, 0.804, 0.824), (1.0, 0.878, 0.510)], atol=0.01
    )  # pass green, failed error red, failed warning amber


def test_quality_history_grid_of_checks_over_runs():
    history = pd.DataFrame(
        {
            "ds": [d("2024-03-01"), d("2024-03-01"), d("2024-03-02"), d("2024-03-02"), d("2024-03-02")],
            "check_name": ["duplicates", "null_values", "duplicates", "duplicates", "null_values"],
            "status": ["pass", "fail", "pass", "fail", "pass"],
        }
    )

    fig = plots.quality_history(history)

    (ax,) = fig.axes
    assert ax.get_title() == "Quality check history"
    assert ax.get_xlabel() == "Run date (ds)"
    (image,) = ax.get_images()
    # rows duplicates, null_values; columns 1 and 2 March; 0 pass, 1 fail (any failure fails the run)
    np.testing.assert_array_equal(image.get_array(), [[0.0, 1.0], [1.0, 0.0]])
    assert tick_labels(ax.yaxis) == ["duplicates", "null_values"]
    assert tick_labels(ax.xaxis) == ["2024-03-01", "2024-03-02"]


def test_quality_history_keeps_the_most_recent_runs_and_marks_missing():
    history = pd.DataFrame(
        {
            "ds": [d("2024-03-01"), d("2024-03-02"), d("2024-03-03"), d("2024-03-03")],
            "table_name": ["stock_prices"] * 4,
            "check_name": ["duplicates", "duplicates", "duplicates", "null_values"],
            "status": ["fail", "pass", "pass", "fail"],
        }
    )

    fig = plots.quality_history(history, max_runs=2)

    (image,) = fig.axes[0].get_images()
    np.testing.assert_array_equal(image.get_array(), [[0.0, 0.0], [2.0, 1.0]])
    assert tick_labels(fig.axes[0].yaxis) == ["stock_prices.duplicates", "stock_prices.null_values"]


def test_array_coverage_grid_per_symbol_and_day():
    coverage = pd.DataFrame(
        {
            "symbol": ["BBB", "AAA", "AAA", "AAA"],
            "date": [d("2024-03-01"), d("2024-03-01"), d("2024-03-02"), d("2024-03-04")],
            "has_bar": [True, True, False, True],
        }
    )

    fig = plots.array_coverage(coverage)

    (ax,) = fig.axes
    assert ax.get_title() == "Bars in the monthly arrays: symbol x day"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Date", "Symbol")
    (image,) = ax.get_images()
    # Every calendar day from 1 to 4 March; a day without a row counts as no bar.
    np.testing.assert_array_equal(image.get_array(), [[1, 0, 0, 1], [1, 0, 0, 0]])
    left, right, _, _ = image.get_extent()
    assert mdates.num2date(left + 0.5).date() == d("2024-03-01")
    assert mdates.num2date(right - 0.5).date() == d("2024-03-04")


def test_array_coverage_counts_per_day_for_many_symbols_or_counts_given():
    coverage = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC", "AAA"],
            "date": [d("2024-03-01"), d("2024-03-01"), d("2024-03-01"), d("2024-03-04")],
            "has_bar": [True, True, False, True],
        }
    )

    many = plots.array_coverage(coverage, max_symbols=2)
    assert many.axes[0].get_title() == "Bars in the monthly arrays: bars per day"
    assert [bar.get_height() for bar in many.axes[0].patches] == [2, 1]

    counts = plots.array_coverage(pd.DataFrame({"date": [d("2024-03-04"), d("2024-03-01")], "bars": [7, 9]}))
    assert [bar.get_height() for bar in counts.axes[0].patches] == [9, 7]
    assert counts.axes[0].get_ylabel() == "Symbols with a bar (count)"


# ------------------------------------------------------------------------------------------- edges


EMPTY_CASES = {
    "price_with_moving_averages": lambda: plots.price_with_moving_averages(pd.DataFrame()),
    "monthly_returns_heatmap": lambda: plots.monthly_returns_heatmap(pd.DataFrame()),
    "drawdown_curves": lambda: plots.drawdown_curves(pd.DataFrame(columns=["symbol", "date", "drawdown"])),
    "rolling_volatility_chart": lambda: plots.rolling_volatility_chart(pd.DataFrame()),
    "volume_with_anomalies": lambda: plots.volume_with_anomalies(pd.DataFrame()),
    "correlation_heatmap": lambda: plots.correlation_heatmap(pd.DataFrame()),
    "top_movers_chart": lambda: plots.top_movers_chart(pd.DataFrame()),
    "ingest_coverage": lambda: plots.ingest_coverage(pd.DataFrame(columns=["date", "bars"]), {}),
    "exploded_series_sample": lambda: plots.exploded_series_sample(pd.DataFrame()),
    "quality_checks_table": lambda: plots.quality_checks_table(pd.DataFrame()),
    "quality_history": lambda: plots.quality_history(pd.DataFrame()),
    "array_coverage": lambda: plots.array_coverage(pd.DataFrame()),
}


@pytest.mark.parametrize("name", sorted(EMPTY_CASES))
def test_empty_input_draws_a_no_data_figure(name):
    fig = EMPTY_CASES[name]()

    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title()
    assert texts(ax) == ["No data"]


def test_exploded_series_sample_without_the_metric_is_no_data():
    exploded = pd.DataFrame({"symbol": ["AAA"], "date": [d("2024-03-01")], "metric_name": ["open"], "value": [1.0]})

    assert texts(plots.exploded_series_sample(exploded).axes[0]) == ["No data"]


def test_missing_columns_are_reported(daily):
    with pytest.raises(ValueError, match=r"missing \['drawdown'\]"):
        plots.drawdown_curves(daily.drop(columns="drawdown"))


def test_figures_use_the_report_size(daily):
    assert tuple(plots.drawdown_curves(daily).get_size_inches()) == (11.0, 6.0)


def test_save_figure_writes_a_png_under_figures(tmp_path, daily):
    fig = plots.drawdown_curves(daily)

    path = plots.save_figure(fig, tmp_path / "runs" / "2024-03-28", "drawdowns")

    assert path == tmp_path / "runs" / "2024-03-28" / "figures" / "drawdowns.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert plots.save_figure(fig, tmp_path, "again.png") == tmp_path / "figures" / "again.png"


def test_save_figure_rejects_a_path_as_name(tmp_path, daily):
    with pytest.raises(ValueError, match="plain file name"):
        plots.save_figure(plots.drawdown_curves(daily), tmp_path, "../escape")


def test_no_pyplot_figures_are_left_open(daily):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.price_with_moving_averages(daily)
    plots.monthly_returns_heatmap(pd.DataFrame({"symbol": ["A"], "month_start": [d("2024-03-01")], "monthly_return": [0.1]}))
    assert plt.get_fignums() == before
