"""Inside a Glue job: `--name value` job arguments override the script's injected parameters.

Stdlib only (plus awsglue when present): it runs first in every generated script, before `lib` needs Spark.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any


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
    """A job argument (always text) as the type of the parameter's injected value."""
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        if text.strip().lower() in ("true", "1", "yes"):
            return True
        if text.strip().lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"job argument expects true or false, got {text!r}")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    try:  # lists, dicts, null: JSON, e.g. --symbols '["AAPL", "MSFT"]'
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve_parameters(parameters: Mapping[str, Any], argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The parameters given as job arguments, typed like their current values; absent ones are left out."""
    argv = sys.argv if argv is None else argv
    names = [name for name in parameters if _given(argv, name)]
    if not names:
        return {}
    raw = _read(argv, names)
    resolved = {}
    for name in names:
        try:
            resolved[name] = _typed(raw[name], parameters[name])
        except ValueError as exc:
            raise ValueError(f"job argument --{name}: {exc}") from exc
    return resolved
