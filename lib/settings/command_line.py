"""The one reader of a command's params file and `-p NAME VALUE` flags, shared by every command of the workspace
(`lib.run`, `lib.prices`, `lib.stream`, `lib.dashboard`, `lib.wap`, `lib.glue`), so each refuses bad input with the
notebooks' own validation (RunConfig) and the same messages."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

import yaml

from lib.core.errors import ConfigError
from lib.core.paths import workspace_root
from lib.settings.config import RunConfig

DEFAULT_PARAMS_FILE = "params/local.yaml"


def add_params_arguments(parser: argparse.ArgumentParser, default_file: str = DEFAULT_PARAMS_FILE) -> None:
    """-f/--parameters-file and repeatable -p/--parameter NAME VALUE, as papermill takes them."""
    parser.add_argument("-f", "--parameters-file", default=default_file,
                        help=f"params YAML (default: {default_file}; a relative path not found here is read from the "
                             "workspace's root)")  # fmt: skip
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter over the file's, e.g. -p warehouse /tmp/wh; repeatable")  # fmt: skip


def params_file_path(path: str | os.PathLike) -> Path:
    """The params file a command names: as given when it exists, else relative to the workspace's root (so
    `-f params/local.yaml` works from any folder, and from notebooks/)."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    in_workspace = workspace_root() / given
    return in_workspace if in_workspace.exists() else given


def cli_value(text: str) -> Any:
    """A -p value typed as YAML (5, 0.5, true, {"a": 1}), or the text itself when YAML cannot read it: the value
    is then judged by its parameter's rule, which names it, rather than by the YAML parser's traceback. A date
    stays text (2024-03-28), as papermill and Glue pass it to a notebook."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return text
    return text if isinstance(value, dt.date) else value


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a papermill params YAML file into a dict (it must be a mapping of parameter names)."""
    path = params_file_path(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"params file {str(path)!r} cannot be read ({exc}); pass one with -f (e.g. -f params/local.yaml)."
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(f"{path} is not valid YAML ({str(exc).strip().splitlines()[0]}); fix the file.") from None
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ConfigError(f"{path} must be a YAML mapping of parameter names to values.")
    return data


def command_line_params(parameters_file: str | os.PathLike, overrides: list[tuple[str, str]]) -> dict[str, Any]:
    """A command's parameters: its params file, then each `-p NAME VALUE` typed by cli_value (RunConfig judges them)."""
    params = load_params_file(parameters_file)
    for name, value in overrides:
        params[name] = cli_value(value)
    return params


def config_from_args(args: argparse.Namespace, **fixed: Any) -> RunConfig:
    """The RunConfig of a command whose parser has add_params_arguments: the file, its -p flags, then `fixed`."""
    return RunConfig.from_params(**{**command_line_params(args.parameters_file, args.parameter), **fixed})

