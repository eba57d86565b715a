"""Inside a Glue job: `--name value` job arguments override the script's injected parameters.

It runs first in every generated script, before `lib` needs Spark: the arguments are read with the stdlib (or
awsglue when present), then every parameter is validated by lib.settings.config's rules, so a bad argument stops the job
with the same ParameterError the runner and a notebook give, before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lib.settings.config import PARAMETERS, RunConfig


def _given(argv: Sequence[str], name: str) -> bool:
    flag = f"--{name}"
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def _read(argv: Sequence[str], names: list[str]) -> dict[str, str]:
    """Glue's getResolvedOptions when awsglue is importable, the same argparse reading otherwise."""
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        for name in names:
            parser.add_argument(f"--{name}", dest=name)
        known, _ = parser.parse_known_args(list(argv[1:]))
        return {name: getattr(known, name) for name in names}
    return getResolvedOptions(list(argv), names)


def _typed(text: str, default: Any) -> Any:
    """A job argument (always text) as the type of the parameter's injected value; text that is not of that type
    stays text, for validation to refuse with the parameter's name (rather than int()'s ValueError)."""
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        if text.strip().lower() in ("true", "1", "yes"):
            return True
        if text.strip().lower() in ("false", "0", "no"):
            return False
        return text
    for number in (int, float):
        if isinstance(default, number):
            try:
                return number(text)
            except ValueError:
                return text
    try:  # lists, dicts, null: JSON, e.g. --symbols '["AAPL", "MSFT"]'
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


def validate(parameters: Mapping[str, Any]) -> None:
    """The job's parameters by RunConfig's rules (those it knows: a notebook may add its own); ParameterError if bad."""
    RunConfig.from_params(**{name: value for name, value in parameters.items() if name in PARAMETERS})


def resolve_parameters(parameters: Mapping[str, Any], argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The parameters given as job arguments, typed like their current values; absent ones are left out.

    Every parameter, given or injected, is validated first: a bad one raises lib.core.errors.ParameterError.
    """
    argv = sys.argv if argv is None else argv
    names = [name for name in parameters if _given(argv, name)]
    raw = _read(argv, names) if names else {}
    resolved = {name: _typed(raw[name], parameters[name]) for name in names}
    validate({**parameters, **resolved})
    return resolved
