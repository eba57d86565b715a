"""Quick looks without a JVM: a few symbols' monthly arrays read with pyiceberg and exploded in pandas."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThanOrEqual

from lib.catalog import pyiceberg_catalog, run_tag
from lib.config import RunConfig
from lib.errors import ConfigError
from lib.monthly import METRICS, month_start


def snapshot_of_run(table, as_of_run: dt.date | None) -> int | None:
    """The snapshot a published run tagged on `table` (run-<ds>, lib.wap); None reads main's current snapshot."""
    if as_of_run is None:
        return None
    tag = run_tag(as_of_run)
    snapshot = table.snapshot_by_name(tag)
    if snapshot is None:
        tags = sorted(name for name, ref in table.metadata.refs.items() if ref.snapshot_ref_type == "tag")
        raise ConfigError(
            f"{'.'.join(table.name())} has no tag {tag}: only runs that 03_quality published are tagged, and a tag is "
            f"kept keep_run_tags_days days. Tagged runs: {', '.join(tags[-10:]) or 'none'}."
        )
    return snapshot.snapshot_id


def read_daily(
    config: RunConfig, symbols: list[str], start: dt.date, end: dt.date, as_of_run: dt.date | None = None
) -> pd.DataFrame:
    """Daily rows (the stock_prices columns) of `symbols` from start..end, read from monthly_stock_prices.

    Only the symbols' rows of the months in the span are read (pyiceberg row filter, pruned by the month
    partition). Days without a bar have no row, as in the Spark path (`steps.trend_daily_rows`). With `as_of_run`,
    the table as that run published it (its run-<ds> tag), not as it is now.
    """
    table = pyiceberg_catalog(config).load_table(f"{config.namespace}.monthly_stock_prices")
    row_filter = And(
        In("symbol", [s.upper() for s in symbols]),
        And(GreaterThanOrEqual("month_start", month_start(start).isoformat()), LessThanOrEqual("month_start", end.isoformat())),
    )
    fields = ("symbol", "metric_name", "metric_array", "month_start")
    monthly = table.scan(row_filter=row_filter, selected_fields=fields, snapshot_id=snapshot_of_run(table, as_of_run)).to_pandas()
    columns = ["symbol", "date", *METRICS]
    if monthly.empty:
        return pd.DataFrame(columns=columns)
    lengths = monthly["metric_array"].map(len).to_numpy()
    exploded = pd.DataFrame(
        {
            "symbol": np.repeat(monthly["symbol"].to_numpy(), lengths),
            "metric_name": np.repeat(monthly["metric_name"].to_numpy(), lengths),
            "date": np.repeat(pd.to_datetime(monthly["month_start"]).to_numpy(), lengths)
            + pd.to_timedelta(np.concatenate([np.arange(n) for n in lengths]), unit="D").to_numpy(),
            "value": np.concatenate([np.asarray(a, dtype="float64") for a in monthly["metric_array"]]),
        }
    )
    exploded["date"] = exploded["date"].dt.date
    exploded = exploded[(exploded["date"] >= start) & (exploded["date"] <= end)]
    daily = exploded.pivot(index=["symbol", "date"], columns="metric_name", values="value")
    daily = daily.reindex(columns=list(METRICS)).dropna(how="all").reset_index().rename_axis(columns=None)
    daily["transactions"] = daily["transactions"].round().astype("Int64")
    return daily[columns].sort_values(["symbol", "date"]).reset_index(drop=True)
