"""What names a series: analyses run per security (security_id) when a frame has it, else per ticker (symbol)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def series_key(frame: DataFrame) -> str:
    """The column whose values each name one series of `frame`: security_id when present (a renamed security is one
    series under two tickers; a reused ticker two series), else symbol (each ticker its own series)."""
    return "security_id" if "security_id" in frame.columns else "symbol"


def carried(frame: DataFrame) -> list[str]:
    """The name columns a transform keeps on its rows: symbol (the ticker as traded) and security_id when present."""
    return ["symbol", "security_id"] if "security_id" in frame.columns else ["symbol"]
