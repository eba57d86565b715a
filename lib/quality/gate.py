"""The gate: a run's check results as quality_results rows, and the stop when an error-severity check failed."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from lib.core.errors import QualityGateError
from lib.storage.catalog import SCHEMAS

if TYPE_CHECKING:
    from lib.quality.checks import CheckResult

# The table is the catalog's; one definition of its columns.
QUALITY_RESULTS_SCHEMA = SCHEMAS["quality_results"]


def results_frame(spark: SparkSession, results: list[CheckResult], ds: dt.date, checked_at: dt.datetime) -> DataFrame:
    """The results as `quality_results` rows (QUALITY_RESULTS_SCHEMA), one per (check, table)."""
    rows = [(ds, r.table_name, r.name, r.severity, r.status, int(r.failed_rows), r.details, checked_at) for r in results]
    return spark.createDataFrame(rows, QUALITY_RESULTS_SCHEMA)


def failed_errors(results: list[CheckResult]) -> list[CheckResult]:
    """The failed results of error severity: the ones that stop the pipeline."""
    return [r for r in results if r.severity == "error" and r.status == "fail"]


def enforce_gate(results: list[CheckResult], ds: dt.date | None = None, advice: str = "") -> None:
    """Raise QualityGateError naming every failed error-severity check (then `advice`); warn-severity failures pass."""
    failed = failed_errors(results)
    if not failed:
        return
    named = ", ".join(f"{r.name} on {r.table_name} ({r.failed_rows} rows)" for r in failed)
    where = f"ds {ds}" if ds is not None else "this run's ds"
    raise QualityGateError(f"quality gate failed: {named}; see quality_results for {where}" + (f". {advice}" if advice else ""))
