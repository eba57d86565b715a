"""The one frozen run configuration, built and validated from a notebook's parameters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import yaml

from lib.errors import ConfigError, DsFormatError
from lib.trading_days import FIRST_SESSION, today_new_york, trading_days

ENVS = ("local", "glue")
STRATEGIES = ("auto", "grouped", "range", "per_ticker")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_ds(value: Any, name: str = "ds") -> dt.date:
    """A YYYY-MM-DD parameter as a date; a clear error for anything else."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip() if value is not None else ""
    if not _DATE_RE.match(text):
        raise DsFormatError(f"{name} must be YYYY-MM-DD, got {value!r}. Example: -p {name} 2024-03-28")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise DsFormatError(f"{name} must be a real calendar date (YYYY-MM-DD), got {value!r}: {exc}") from exc


# Requests in flight per Spark partition of the fan-out. 128 against the simulator's 20 ms on 2 cores: 64 leaves the
# fan-out waiting on latency (bench_ingest); the rate cap, not this, is what keeps a real plan's limits.
DEFAULT_CONCURRENCY = 128

@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a step needs, validated once; notebooks build it from their parameters cell."""

    ds: dt.date
    start_ds: dt.date
    env: str = "local"
    warehouse: str = "warehouse"
    catalog: str = "local"
    namespace: str = "stocks"
    api_base_url: str = ""
    strategy: str = "auto"
    run_dir: str = ""
    api_key_secret_id: str = ""
    simulator_tickers: int = 300
    max_calls_per_minute: float = 0.0
    adjusted: bool = True
    max_attempts: int = 5
    request_timeout_s: float = 30.0
    concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per Spark partition
    symbols: tuple[str, ...] = ()
    top_n: int = 8
    quality: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    simulator_options: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_params(cls, **params: Any) -> RunConfig:
        """Build from notebook/papermill parameters; unknown names are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {unknown}; known parameters are {sorted(known)}. "
                "Check the spelling in your params file or -p flags."
            )
        ds = parse_ds(params.get("ds"), "ds")
        raw_start = params.get("start_ds")
        start_ds = ds if raw_start in (None, "", "null") else parse_ds(raw_start, "start_ds")
        values = dict(params, ds=ds, start_ds=start_ds)
        if values.get("symbols") is None or values.get("symbols") == "":
            values["symbols"] = ()
        elif isinstance(values.get("symbols"), str):
            values["symbols"] = tuple(s.strip().upper() for s in values["symbols"].split(",") if s.strip())
        else:
            values["symbols"] = tuple(str(s).upper() for s in values["symbols"])
        for key in ("api_base_url", "run_dir", "api_key_secret_id"):
            if values.get(key) is None:
                values[key] = ""
        values["quality"] = dict(values.get("quality") or {})
        values["simulator_options"] = dict(values.get("simulator_options") or {})
        config = cls(**values)
        config.validate()
        if not config.run_dir:
            config = dataclasses.replace(config, run_dir=str(Path("runs") / str(config.ds)))
        return config

    def validate(self) -> None:
        if self.start_ds > self.ds:
            raise ConfigError(f"start_ds ({self.start_ds}) is after ds ({self.ds}): start_ds must be on or before ds.")
        today = today_new_york()
        if self.ds > today:
            raise ConfigError(f"ds {self.ds} is in the future (today in New York is {today}): pick a past date.")
        if self.start_ds < FIRST_SESSION:
            raise ConfigError(f"start_ds {self.start_ds} is before {FIRST_SESSION}, the first day the workspace serves.")
        if self.env not in ENVS:
            raise ConfigError(f"env must be one of {list(ENVS)}, got {self.env!r}.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}.")
        if self.env == "glue" and not str(self.warehouse).startswith("s3://"):
            raise ConfigError(f"env glue needs an s3:// warehouse, got {self.warehouse!r}.")
        if self.api_base_url and not re.match(r"^https?://", self.api_base_url):
            raise ConfigError(
                f"api_base_url must start with http:// or https://, got {self.api_base_url!r}; "
                "leave it empty to use the bundled simulator."
            )
        for name in ("max_attempts", "concurrency", "simulator_tickers", "top_n"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if self.max_calls_per_minute < 0:
            raise ConfigError(f"max_calls_per_minute must be 0 (unlimited) or positive, got {self.max_calls_per_minute}.")
        if self.env == "local":
            check_local_warehouse(self.warehouse)

    @property
    def span_days(self) -> list[dt.date]:
        """The NYSE trading days from start_ds to ds."""
        return trading_days(self.start_ds, self.ds)

    @property
    def figures_dir(self) -> Path:
        return Path(self.run_dir) / "figures"

    @property
    def uses_simulator(self) -> bool:
        return not self.api_base_url

    def table(self, name: str) -> str:
        """Fully qualified Iceberg table name."""
        return f"{self.catalog}.{self.namespace}.{name}"


def check_local_warehouse(warehouse: str | os.PathLike) -> None:
    """Refuse a local warehouse folder that cannot be created or written, before any work starts.

    Nothing is created here: the folder, or its nearest existing parent, must be a writable directory.
    URIs (s3://, file://) are left to the catalog.
    """
    text = str(warehouse)
    if "://" in text:
        return
    if not text.strip():
        raise ConfigError("warehouse is empty: name a folder for the Iceberg warehouse, e.g. -p warehouse warehouse.")
    path = Path(text).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise ConfigError(
            f"warehouse {text!r} is a file, not a folder. "
            "Point -p warehouse at a folder you can write (it is created when missing)."
        )
    if not existing.is_dir():
        raise ConfigError(
            f"warehouse {text!r} cannot be created: {str(existing)!r} is a file, not a folder. "
            "Point -p warehouse at a folder you can write."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created: {str(existing)!r} is not writable"
        raise ConfigError(
            f"warehouse {text!r} {what} (permissions or a read-only file system). "
            "Point -p warehouse at a folder you can write, or fix its permissions."
        )


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a papermill params YAML file into a dict (it must be a mapping)."""
    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping of parameter names to values.")
    return data
