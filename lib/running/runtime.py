"""What every notebook does first: a config from its parameters, a Spark session, and the data source.

Importing it also makes the notebook show figures as pictures and the workspace's errors as one line
(`lib.presentation.display.install`), so every notebook gets that from its first cell.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lib.core.api_key import env_api_key, resolve_api_key
from lib.ingestion.rest_client import ClientSettings
from lib.presentation import display
from lib.settings.config import RunConfig
from lib.simulator import SimulatorProcess
from lib.storage.session import build_glue_session, build_local_session

display.install()

# The parameters every notebook declares in its parameters cell (CONTRACT.md).
COMMON_PARAMETERS = (
    "ds", "start_ds", "env", "warehouse", "catalog", "namespace", "api_base_url", "strategy", "run_dir", "spark_master",
)


def config_from(namespace: dict[str, Any], names: tuple[str, ...] | list[str]) -> RunConfig:
    """Build the run config from the parameters named in a notebook's parameters cell."""
    return RunConfig.from_params(**{name: namespace[name] for name in names if name in namespace})


def spark_session(config: RunConfig):
    """The one session of a step: local Iceberg on SQLite (on `spark_master`, default local[*]), or Glue's with env glue."""
    if config.env == "glue":
        return build_glue_session(config.catalog, config.warehouse)
    return build_local_session(config.catalog, config.warehouse, app_name=f"stocks {config.ds}", master=config.spark_master)


@dataclasses.dataclass
class DataSource:
    """The Massive (formerly Polygon.io) endpoint of a run: the configured URL, or the bundled simulator on loopback."""

    settings: ClientSettings
    simulator: Any = None

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def description(self) -> str:
        if self.simulator is not None:
            return f"the bundled simulator of the Massive (formerly Polygon.io) API at {self.base_url}"
        return f"the Massive (formerly Polygon.io) API at {self.base_url}"

    def stop(self) -> None:
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None


def client_settings(config: RunConfig, base_url: str, api_key: str) -> ClientSettings:
    """The client settings of a run: timeout, attempts and the rate cap (for all partitions together)."""
    return ClientSettings(
        base_url=base_url,
        api_key=api_key,
        timeout_s=config.request_timeout_s,
        max_attempts=config.max_attempts,
        max_calls_per_minute=config.max_calls_per_minute,
    )


def open_data_source(config: RunConfig, **simulator_options: Any) -> DataSource:
    """Start the simulator when api_base_url is empty; resolve the key (never printed)."""
    api_key = resolve_api_key(config.uses_simulator, config.api_key_secret_id)
    if not config.uses_simulator:
        return DataSource(client_settings(config, config.api_base_url, api_key))
    options = {"tickers": config.simulator_tickers, **config.simulator_options, **simulator_options}
    # The simulator accepts only the key of $MASSIVE_API_KEY or $POLYGON_API_KEY when one is set; otherwise any key.
    simulator = SimulatorProcess(api_key=env_api_key() or None, **options).start()
    return DataSource(client_settings(config, simulator.base_url, api_key), simulator)


def figures_dir(config: RunConfig) -> Path:
    path = config.figures_dir
    path.mkdir(parents=True, exist_ok=True)
    return path
