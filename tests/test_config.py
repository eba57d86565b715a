"""Bad parameters are refused with a message that says what was wrong and what to do."""

import datetime as dt

import pytest

from lib.core.errors import ConfigError, DsFormatError
from lib.core.paths import WORKSPACE
from lib.core.trading_days import today_new_york
from lib.settings.command_line import load_params_file
from lib.settings.config import RunConfig


def test_valid_params_build_a_config():
    config = RunConfig.from_params(ds="2024-03-28", start_ds="2024-03-01")
    assert config.ds == dt.date(2024, 3, 28)
    assert config.start_ds == dt.date(2024, 3, 1)
    assert config.run_dir == str(WORKSPACE / "runs" / "2024-03-28")  # relative to the workspace root
    assert config.span_days[0] == dt.date(2024, 3, 1)
    assert dt.date(2024, 3, 29) not in config.span_days  # Good Friday
    assert len(config.span_days) == 20


def test_empty_start_ds_means_ds_alone():
    assert RunConfig.from_params(ds="2024-03-28", start_ds="").start_ds == dt.date(2024, 3, 28)
    assert RunConfig.from_params(ds="2024-03-28", start_ds=None).start_ds == dt.date(2024, 3, 28)


@pytest.mark.parametrize("bad", ["2024/1/2", "20240102", "2024-13-01", "yesterday", ""])
def test_bad_ds_is_refused(bad):
    with pytest.raises(DsFormatError, match="YYYY-MM-DD"):
        RunConfig.from_params(ds=bad)


def test_start_after_ds_is_refused():
    with pytest.raises(ConfigError, match="start_ds .* is after ds"):
        RunConfig.from_params(ds="2024-03-01", start_ds="2024-03-28")


def test_future_ds_is_refused():
    future = today_new_york() + dt.timedelta(days=3)
    with pytest.raises(ConfigError, match="in the future"):
        RunConfig.from_params(ds=future.isoformat())


@pytest.mark.parametrize(("name", "value", "message"), [
    ("strategy", "fastest", "strategy must be one of"),
    ("env", "cloud", "env must be one of"),
    ("api_base_url", "api.polygon.io", "must start with http"),
])
def test_unknown_choices_are_refused(name, value, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_params(ds="2024-03-28", **{name: value})


def test_unknown_parameter_is_refused():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['dss'\]"):
        RunConfig.from_params(ds="2024-03-28", dss="2024-03-28")


def test_span_without_trading_day_is_empty_not_an_error():
    config = RunConfig.from_params(ds="2024-03-31", start_ds="2024-03-29")  # Good Friday + weekend
    assert config.span_days == []


def test_local_params_file_builds_a_config():
    config = RunConfig.from_params(**load_params_file("params/local.yaml"))
    assert config.env == "local" and config.catalog == "local" and config.namespace == "stocks"
    assert config.span_days, "the default span must hold market days"
