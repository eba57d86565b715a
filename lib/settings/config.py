"""The one frozen run configuration, built and validated from a notebook's parameters.

Every parameter the notebooks and the runner accept is checked here, once, before any work: its type (with the
string forms papermill -p and Glue job arguments give: "5", "0.5", "true"), its range and its format. A refused
value raises ParameterError, which names the parameter, the value received, what was expected and what to do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from lib.core.errors import ConfigError, DsFormatError, ParameterError
from lib.core.paths import at_workspace
from lib.core.redaction import shown_value
from lib.core.trading_days import FIRST_SESSION, today_new_york, trading_days
from lib.core.vocabulary import ADJUSTMENTS
from lib.settings.thresholds import CHECK_NAMES, DEFAULT_THRESHOLDS, SEVERITIES, resolve_thresholds

ENVS = ("local", "glue")
STRATEGIES = ("auto", "grouped", "range", "per_ticker")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
# Iceberg catalog, namespace and branch names: they end up in SQL (quoted too, lib.storage.catalog.quote_identifier).
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
IDENTIFIER_HINT = "Names take ASCII letters, digits and _, start with a letter or _, at most 64 characters"
# A ticker as Polygon spells it, upper-cased: AAPL, BRK.A, I:SPX, X:BTCUSD.
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.:\-]{0,19}$")
MAX_SYMBOLS = 1000
# A Secrets Manager secret name or ARN.
SECRET_ID_RE = re.compile(r"^[A-Za-z0-9/_+=.@:\-]{1,2048}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
SPARK_LOCAL_RE = re.compile(r"^local(\[(\*|[1-9][0-9]{0,3})\])?$")
INTEGER_RE = re.compile(r"^[ \t]*[+-]?[0-9]{1,18}[ \t]*$")  # spaces and tabs only: int() refuses \x1c-\x1f
NUMBER_RE = re.compile(r"^[ \t]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?[ \t]*$")
MAX_PATH = 4096
MAX_MAPPING_TEXT = 10_000
KEY_HINT = "The key goes in POLYGON_API_KEY, or in AWS Secrets Manager named by api_key_secret_id; never in a URL."
# File systems that hold no folders of ours however writable they look (root passes every access() check there).
PSEUDO_FILESYSTEMS = frozenset(
    ("proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs", "pstore", "bpf", "configfs",
     "fusectl", "mqueue", "binfmt_misc", "efivarfs", "autofs")
)  # fmt: skip


def parse_ds(value: Any, name: str = "ds") -> dt.date:
    """A YYYY-MM-DD parameter as a date; a clear error for anything else."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip() if value is not None else ""
    example = f"Example: {name} 2024-03-28." if name.startswith("-") else f"Example: -p {name} 2024-03-28."
    if not _DATE_RE.match(text):
        raise DsFormatError(name, value, "YYYY-MM-DD", example)
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise DsFormatError(name, value, f"a real calendar date, YYYY-MM-DD ({exc})", example) from exc


# --- one rule per kind of value: coerce the obvious string forms, refuse the rest -----------------------------------


def _integer(name: str, value: Any, low: int, high: int, example: Any, field: str = "") -> int:
    hint = f"Example: -p {name} {example}." if not field else ""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParameterError(name, value, f"an integer from {low} to {high}", hint, field=field)
    if isinstance(value, float):
        if not value.is_integer():
            raise ParameterError(name, value, f"a whole number from {low} to {high}", hint, field=field)
        number = int(value)
    elif isinstance(value, str):
        if not INTEGER_RE.match(value):
            raise ParameterError(name, value, f"an integer from {low} to {high}", hint, field=field)
        number = int(value)
    else:
        number = value
    if number < low:
        raise ParameterError(name, value, f"at least {low}", hint, field=field)
    if number > high:
        raise ParameterError(name, value, f"at most {high}", hint, field=field)
    return number


def _number(name: str, value: Any, low: float, high: float, example: Any, *, above_low: bool = False,
            field: str = "") -> float:  # fmt: skip
    hint = f"Example: -p {name} {example}." if not field else ""
    low_text, high_text = _plain(low), _plain(high)
    span = f"greater than {low_text}, at most {high_text}" if above_low else f"from {low_text} to {high_text}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParameterError(name, value, f"a number {span}", hint, field=field)
    if isinstance(value, str) and not NUMBER_RE.match(value):
        raise ParameterError(name, value, f"a number {span}", hint, field=field)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise ParameterError(name, value, f"a number {span}", hint, field=field) from None
    if not math.isfinite(number):
        raise ParameterError(name, value, f"a finite number {span}", hint, field=field)
    if number < low or (above_low and number == low):
        raise ParameterError(name, value, f"{'greater than' if above_low else 'at least'} {low_text}", hint, field=field)
    if number > high:
        raise ParameterError(name, value, f"at most {high_text}", hint, field=field)
    return number


def _plain(number: float) -> str:
    """1000000 rather than 1e+06 in a message."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0"):
        return False
    raise ParameterError(name, value, "true or false", f"Example: -p {name} true.")


def _text(name: str, value: Any, *, empty_ok: bool, max_length: int, hint: str = "") -> str:
    if value is None and empty_ok:
        return ""
    if not isinstance(value, str):
        raise ParameterError(name, value, "text" + ("" if empty_ok else ", not empty"), hint)
    if not value and not empty_ok:
        raise ParameterError(name, value, "set (it cannot be empty)", hint)
    if len(value) > max_length:
        raise ParameterError(name, value, f"at most {max_length} characters long", hint)
    if any(not ch.isprintable() for ch in value):
        raise ParameterError(name, value, "text without control or other non-printable characters (tabs, newlines, NUL)", hint)
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(name, value, f"one of {list(choices)}", f"Example: -p {name} {choices[0]}.")
    return value


def _identifier(name: str, value: Any, *, empty_ok: bool = False, example: str = "") -> str:
    hint = f"{IDENTIFIER_HINT}; e.g. -p {name} {example}." + (" Leave it empty for none." if empty_ok else "")
    text = _text(name, value, empty_ok=empty_ok, max_length=64, hint=hint)
    if not text and empty_ok:
        return ""
    if not IDENTIFIER_RE.match(text):
        raise ParameterError(name, value, "an identifier (letters, digits and _, not starting with a digit)", hint)
    return text


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(host))


def _url(name: str, value: Any, schemes: tuple[str, ...], example: str, empty_hint: str, *, path_ok: bool = True) -> str:
    """A URL parsed with urllib: one of `schemes`, a host, a valid port, no credentials, no query or fragment."""
    hint = f"Example: -p {name} {example}; {empty_hint}"
    text = _text(name, value, empty_ok=True, max_length=2048, hint=hint)
    if not text:
        return ""
    starts = " or ".join(f"{s}://" for s in schemes)
    if any(ch.isspace() or ord(ch) > 126 for ch in text):
        raise ParameterError(name, value, "a URL of printable ASCII without spaces (IDN hosts in their xn-- form)", hint)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:  # a bad port or a broken [IPv6] host
        raise ParameterError(name, value, f"a well-formed URL ({exc})", hint) from None
    if parts.scheme.lower() not in schemes or not text.lower().startswith(tuple(f"{s}://" for s in schemes)):
        raise ParameterError(name, value, "", hint, message=f"{name} must start with {starts}, got {shown_value(value)}.")
    if "@" in parts.netloc:
        raise ParameterError(name, value, "a URL without credentials (user:password@)", KEY_HINT)
    if not parts.hostname or not _host_ok(parts.hostname):
        raise ParameterError(name, value, f"a URL with a host name, as in {example}", hint)
    if port is not None and not 1 <= port <= 65535:
        raise ParameterError(name, value, "a URL with a port from 1 to 65535", hint)
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ParameterError(name, value, "a base URL without a query or fragment (?... or #...)", KEY_HINT)
    if not path_ok and parts.path not in ("", "/"):
        raise ParameterError(name, value, f"a URL without a path, as in {example}", hint)
    return text


def _api_base_url(name: str, value: Any) -> str:
    return _url(name, value, ("http", "https"), "https://api.massive.com", "leave it empty to use the bundled simulator.")


def _stream_url(name: str, value: Any) -> str:
    return _url(name, value, ("ws", "wss"), "wss://socket.massive.com/stocks", "leave it empty for the simulator's feed.")


def _spark_master(name: str, value: Any) -> str:
    expected = "empty, local, local[N], local[*] or spark://HOST:PORT"
    hint = f"Example: -p {name} spark://127.0.0.1:7077; leave it empty for local[*]."
    text = _text(name, value, empty_ok=True, max_length=300, hint=hint)
    if not text or SPARK_LOCAL_RE.match(text):
        return text
    if not text.startswith("spark://"):
        raise ParameterError(name, value, expected, hint)
    _url(name, text, ("spark",), "spark://127.0.0.1:7077", "leave it empty for local[*].", path_ok=False)
    if urlsplit(text).port is None:
        raise ParameterError(name, value, "spark://HOST:PORT with the master's port (standalone: 7077)", hint)
    return text


def _secret_id(name: str, value: Any) -> str:
    hint = "Name the Secrets Manager secret (e.g. polygon/api-key) or its ARN; leave it empty to read $POLYGON_API_KEY."
    text = _text(name, value, empty_ok=True, max_length=2048, hint=hint)
    if text and not SECRET_ID_RE.match(text):
        raise ParameterError(name, value, "a secret name or ARN (letters, digits and /_+=.@:-)", hint)
    return text


def _symbol_list(name: str, value: Any, field: str = "") -> tuple[str, ...]:
    """Ticker symbols from a list or a comma-separated text (papermill -p, Glue arguments), upper-cased."""
    hint = f"Example: -p {name} AAPL,MSFT (or a list)." if not field else ""
    expected = "a list of ticker symbols or a comma-separated text"
    if value is None or value == "":
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _parsed(name, value, expected, hint, field)
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise ParameterError(name, value, expected, hint, field=field)
    if len(items) > MAX_SYMBOLS:
        raise ParameterError(name, value, f"at most {MAX_SYMBOLS} symbols", hint, field=field)
    symbols = []
    for item in items:
        symbol = item.strip().upper() if isinstance(item, str) and item.isascii() else None
        if symbol is None or not SYMBOL_RE.match(symbol):
            raise ParameterError(name, item, "a ticker symbol such as AAPL, BRK.A or I:SPX (letters, digits, . : -)", hint,
                                 field=field)  # fmt: skip
        symbols.append(symbol)
    return tuple(symbols)


def _parsed(name: str, text: str, expected: str, hint: str, field: str = "") -> Any:
    if len(text) > MAX_MAPPING_TEXT:
        raise ParameterError(name, text, f"at most {MAX_MAPPING_TEXT:,} characters of JSON or YAML", hint, field=field)
    try:
        return yaml.safe_load(text)
    # YAML's own errors, and what its constructors raise (a date 2024-13-45, nesting deeper than the stack).
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(name, text, f"{expected} in JSON or YAML ({problem})", hint, field=field) from None


def _mapping(name: str, value: Any, example: str) -> dict:
    """A mapping parameter, also from its JSON or YAML text; empty or null means {}."""
    hint = f"Example: -p {name} '{example}'."
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        value = _parsed(name, value, "a mapping", hint)
        if value is None:
            return {}
    if not isinstance(value, Mapping):
        raise ParameterError(name, value, "a mapping of names to values", hint)
    for key in value:
        if not isinstance(key, str):
            raise ParameterError(name, key, "a mapping whose keys are names (text)", hint)
    return dict(value)


def _unknown_key(name: str, key: str, known: list[str], example: str) -> ParameterError:
    return ParameterError(name, key, "", f"Example: -p {name} '{example}'.",
                          message=f"{name} has an unknown key {shown_value(key)}; the keys it takes are {known}.")  # fmt: skip


def _comma_kinds(name: str, field: str, value: Any, kinds: tuple[str, ...]) -> str:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(k, str) for k in items):
        raise ParameterError(name, value, f"a comma-separated text of {', '.join(kinds)}", field=field)
    items = [k.strip() for k in items if k.strip()]
    for kind in items:
        if kind not in kinds:
            raise ParameterError(name, kind, f"one of {list(kinds)}", field=field)
    return ",".join(items)


def _defects(name: str, field: str, value: Any) -> str:
    # Here, not at the top: lib.simulator's package loads its data model and feed (0.3 s), wanted only when a run
    # names simulator defects.
    from lib.simulator.faults import DEFECT_KINDS

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(d, str) for d in items):
        raise ParameterError(name, value, "a comma-separated text of KIND:TICKER:YYYY-MM-DD", field=field)
    expected = f"KIND:TICKER:YYYY-MM-DD with KIND one of {list(DEFECT_KINDS)}"
    defects = []
    for item in (d.strip() for d in items if d.strip()):
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in DEFECT_KINDS or not SYMBOL_RE.match(parts[1]) or not _DATE_RE.match(parts[2]):
            raise ParameterError(name, item, expected, "Example: dup:AAPL:2024-03-28.", field=field)
        try:
            dt.date.fromisoformat(parts[2])
        except ValueError:
            raise ParameterError(name, item, expected + " (a real date)", field=field) from None
        defects.append(item)
    return ",".join(defects)


def _fault_kinds(name: str, field: str, value: Any) -> str:
    from lib.simulator.faults import FAULT_KINDS  # lazy for the same reason as in _defects

    return _comma_kinds(name, field, value, FAULT_KINDS)


def _optional_seed(name: str, field: str, value: Any) -> int | None:
    return None if value is None else _integer(name, value, 0, 2**32 - 1, 11, field=field)


def _option_date(name: str, field: str, value: Any) -> str:
    """A date as YYYY-MM-DD (the simulator's --as-of: its today, for replaying daily runs)."""
    text = value.isoformat() if isinstance(value, dt.date) else value
    if not isinstance(text, str) or not _DATE_RE.match(text):
        raise ParameterError(name, value, "a date as YYYY-MM-DD", "Example: 2024-03-28.", field=field)
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise ParameterError(name, value, "a real date as YYYY-MM-DD", field=field) from None
    return text


# The simulator's own flags (python -m lib.simulator --help), as simulator_options keys; the universe size is
# simulator_tickers, and the simulator always binds loopback on a free port.
SIMULATOR_OPTIONS: dict[str, Callable[[str, str, Any], Any]] = {
    "latency_ms": lambda n, f, v: _number(n, v, 0, 60_000, 20, field=f),
    "seed": lambda n, f, v: _integer(n, v, 0, 2**32 - 1, 42, field=f),
    "fault_rate": lambda n, f, v: _number(n, v, 0, 1, 0.2, field=f),
    "faults": _fault_kinds,
    "fail_tickers": lambda n, f, v: ",".join(_symbol_list(n, v, field=f)),
    "retry_after": lambda n, f, v: _integer(n, v, 0, 3600, 1, field=f),
    "slow_ms": lambda n, f, v: _number(n, v, 0, 600_000, 2000, field=f),
    "fault_seed": _optional_seed,
    "defects": _defects,
    "as_of": lambda n, f, v: _option_date(n, f, v),
    # The websocket feed (lib.simulator.feed, for lib.stream): its clock and its faults.
    "feed_minutes_per_second": lambda n, f, v: _number(n, v, 0, 100_000, 30, above_low=True, field=f),
    "feed_drops": lambda n, f, v: ",".join(str(_integer(n, m, 0, 389, 120, field=f)) for m in str(v).split(",") if m.strip()),
    "feed_duplicate_rate": lambda n, f, v: _number(n, v, 0, 1, 0.02, field=f),
    "feed_correct_rate": lambda n, f, v: _number(n, v, 0, 1, 0.02, field=f),
}


def _simulator_options(name: str, value: Any) -> dict:
    example = '{"latency_ms": 20}'
    options = _mapping(name, value, example)
    checked = {}
    for key, item in options.items():
        if key not in SIMULATOR_OPTIONS:
            raise _unknown_key(name, key, sorted(SIMULATOR_OPTIONS), example)
        checked[key] = None if item is None else SIMULATOR_OPTIONS[key](name, key, item)
    return checked


def _quality(name: str, value: Any) -> dict:
    """Thresholds and severities over lib.settings.thresholds.DEFAULT_THRESHOLDS: its keys, their types, non-negative."""
    example = '{"outlier_z": 6.0}'
    overrides = _mapping(name, value, example)
    if not overrides:
        return {}
    thresholds = {key: default for key, default in DEFAULT_THRESHOLDS.items() if key != "severity"}
    checked: dict[str, Any] = {}
    for key, item in overrides.items():
        if key == "severity":
            severities = _mapping(name, item, '{"severity": {"outliers": "error"}}')
            for check, severity in severities.items():
                if check not in CHECK_NAMES:
                    raise _unknown_key(name, check, list(CHECK_NAMES), '{"severity": {"outliers": "error"}}')
                if severity not in SEVERITIES:
                    raise ParameterError(name, severity, f"one of {list(SEVERITIES)}", field=f"severity.{check}")
            checked[key] = severities
        elif key not in thresholds:
            raise _unknown_key(name, key, sorted([*thresholds, "severity"]), example)
        elif isinstance(thresholds[key], bool):
            checked[key] = _boolean(name, item)
        elif isinstance(thresholds[key], int):
            checked[key] = _integer(name, item, 0, 1_000_000, thresholds[key], field=key)
        elif isinstance(thresholds[key], float):
            checked[key] = _number(name, item, 0, 1e6, thresholds[key], field=key)
        else:
            checked[key] = item
    try:  # each threshold's own range (a factor above 1, ...) is lib.settings.thresholds' to say
        resolve_thresholds(checked)
    except ConfigError as exc:
        raise ParameterError(name, value, "", message=str(exc) if str(exc).startswith(name) else f"{name}: {exc}") from None
    return checked


def _start_ds(name: str, value: Any) -> dt.date | None:
    return None if value in (None, "", "null") else parse_ds(value, name)


def _path(name: str, value: Any, *, empty_ok: bool) -> str:
    hint = f"Point -p {name} at a folder you can write (it is created when missing)."
    return _text(name, value, empty_ok=empty_ok, max_length=MAX_PATH, hint=hint)


def _wap_branch(name: str, value: Any) -> str:
    branch = _identifier(name, value, empty_ok=True, example="audit")
    if branch == "main":
        raise ParameterError(name, value, "a branch other than main", "Leave it empty to write main directly.")
    return branch


# Every parameter the notebooks and the runner accept, with its rule. Defaults are RunConfig's.
PARAMETER_RULES: dict[str, Callable[[str, Any], Any]] = {
    "ds": lambda n, v: parse_ds(v, n),
    "start_ds": _start_ds,
    "env": lambda n, v: _choice(n, v, ENVS),
    "warehouse": lambda n, v: _path(n, v, empty_ok=False),
    "catalog": lambda n, v: _identifier(n, v, example="local"),
    "namespace": lambda n, v: _identifier(n, v, example="stocks"),
    "api_base_url": _api_base_url,
    "strategy": lambda n, v: _choice(n, v, STRATEGIES),
    "run_dir": lambda n, v: _path(n, v, empty_ok=True),
    "api_key_secret_id": _secret_id,
    "simulator_tickers": lambda n, v: _integer(n, v, 1, 100_000, 300),
    "max_calls_per_minute": lambda n, v: _number(n, v, 0, 1_000_000, 5),
    "adjusted": _boolean,
    "max_attempts": lambda n, v: _integer(n, v, 1, 20, 5),
    "request_timeout_s": lambda n, v: _number(n, v, 0, 600, 30, above_low=True),
    "concurrency": lambda n, v: _integer(n, v, 1, 1024, 128),
    "symbols": _symbol_list,
    "top_n": lambda n, v: _integer(n, v, 1, MAX_SYMBOLS, 8),
    "lookback_days": lambda n, v: _integer(n, v, 0, 36_500, 365),
    "quality": _quality,
    "simulator_options": _simulator_options,
    "adjust": lambda n, v: _choice(n, v, ADJUSTMENTS),
    "wap_branch": _wap_branch,
    "keep_run_tags_days": lambda n, v: _integer(n, v, 1, 36_500, 30),
    "spark_master": _spark_master,
    "stream_url": _stream_url,
    "horizon_days": lambda n, v: _integer(n, v, 1, 250, 5),
}


# Requests in flight per Spark partition of the fan-out. 128 against the simulator's 20 ms on 2 cores: 64 leaves the
# fan-out waiting on latency (bench_ingest); the rate cap, not this, is what keeps a real plan's limits.
DEFAULT_CONCURRENCY = 128
WHOLE_MARKET_TICKERS = 12_000  # about what the real API lists on a day (the simulator's universe is known)


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
    adjusted: bool = False  # bars are fetched and stored as traded; lib.prices adjusts them on read
    max_attempts: int = 5
    request_timeout_s: float = 30.0
    concurrency: int = DEFAULT_CONCURRENCY  # requests in flight per Spark partition
    symbols: tuple[str, ...] = ()
    top_n: int = 8
    lookback_days: int = 365  # 04_trends: history before ds to analyse
    quality: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    simulator_options: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    # Parameters of steps to come, validated now: the adjusted read, write-audit-publish, the Spark master,
    # the websocket feed, the forecast horizon.
    adjust: str = "total_return"
    wap_branch: str = ""  # write-audit-publish: 01/02 write this Iceberg branch, 03 publishes it to main (lib.wap)
    keep_run_tags_days: int = 30  # how long the run-<ds> tags (and the snapshots they hold) outlive expiry
    spark_master: str = ""
    stream_url: str = ""
    horizon_days: int = 5

    @classmethod
    def from_params(cls, **params: Any) -> RunConfig:
        """Build from notebook/papermill parameters; unknown names and bad values are refused (ParameterError)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ParameterError(
                ", ".join(unknown), params[unknown[0]], "a known parameter",
                message=f"unknown parameter(s) {unknown}; known parameters are {sorted(known)}. "
                "Check the spelling in your params file or -p flags.",
            )  # fmt: skip
        values = {name: PARAMETER_RULES[name](name, value) for name, value in params.items() if name in PARAMETER_RULES}
        values["ds"] = parse_ds(params.get("ds"), "ds")
        if values.get("start_ds") is None:
            values["start_ds"] = values["ds"]
        if values.get("env", "local") == "local" and "://" not in str(values.get("warehouse", "")):
            # A local run's folders are the workspace's wherever it was started (JupyterLab runs notebooks/, the
            # runner the repository): relative paths resolve against the workspace root, as the runner always did.
            values["warehouse"] = str(at_workspace(values.get("warehouse", cls.warehouse)))
            values["run_dir"] = str(at_workspace(values.get("run_dir") or Path("runs") / str(values["ds"])))
        config = cls(**values)
        config.validate()
        if not config.run_dir:
            config = dataclasses.replace(config, run_dir=str(Path("runs") / str(config.ds)))
        return config

    def validate(self) -> None:
        """Every field by its rule, then the rules between fields; raises ParameterError for the first refused."""
        for field in dataclasses.fields(self):
            PARAMETER_RULES[field.name](field.name, getattr(self, field.name))
        if self.start_ds > self.ds:
            raise ParameterError(
                "start_ds", str(self.start_ds), "on or before ds",
                message=f"start_ds ({self.start_ds}) is after ds ({self.ds}): start_ds must be on or before ds.",
            )  # fmt: skip
        today = today_new_york()
        if self.ds > today:
            raise ParameterError(
                "ds", str(self.ds), "a past date",
                message=f"ds {self.ds} is in the future (today in New York is {today}): pick a past date.",
            )  # fmt: skip
        if self.start_ds < FIRST_SESSION:
            raise ParameterError(
                "start_ds", str(self.start_ds), f"on or after {FIRST_SESSION}",
                message=f"start_ds {self.start_ds} is before {FIRST_SESSION}, the first day the workspace serves.",
            )  # fmt: skip
        if self.env == "glue":
            check_s3_warehouse(self.warehouse)
        else:
            check_local_warehouse(self.warehouse)
            check_local_folder(self.run_dir or str(Path("runs") / str(self.ds)), "run_dir",
                               "or leave it empty for runs/<ds>")  # fmt: skip

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
        """Fully qualified Iceberg table name, for messages and the DataFrame API (SQL: lib.storage.catalog.table_identifier)."""
        return f"{self.catalog}.{self.namespace}.{name}"


PARAMETERS = tuple(f.name for f in dataclasses.fields(RunConfig))


def check_s3_warehouse(warehouse: str) -> None:
    """env glue: an s3://bucket/prefix warehouse, parsed."""
    hint = "Example: -p warehouse s3://my-stocks-lake/warehouse (env glue keeps the warehouse on S3)."
    if not str(warehouse).startswith("s3://"):
        raise ParameterError("warehouse", warehouse, "", hint,
                             message=f"env glue needs an s3:// warehouse, got {shown_value(warehouse)}.")  # fmt: skip
    parts = urlsplit(warehouse)
    if "@" in parts.netloc or ":" in parts.netloc or parts.query or parts.fragment or not S3_BUCKET_RE.match(parts.netloc):
        raise ParameterError("warehouse", warehouse, "s3://BUCKET/PREFIX with a valid bucket name (a-z, 0-9, . and -)", hint)


def check_local_warehouse(warehouse: str | os.PathLike) -> None:
    """Refuse a local warehouse folder that cannot be created or written, before any work starts (env local)."""
    text = str(warehouse)
    if "://" in text:
        hint = "An s3:// warehouse runs with env glue (-f params/glue.yaml); a local one is a folder path."
        raise ParameterError("warehouse", text, "a local folder when env is local", hint)
    check_local_folder(text, "warehouse")


def check_local_folder(folder: str | os.PathLike, name: str, alternative: str = "") -> None:
    """A folder that can be created or written, or a ParameterError saying why not. Nothing is created here.

    The folder, or its nearest existing parent, must be a writable directory on a file system that holds folders
    (not /proc or /sys, where root passes every access check); no component may be a dangling link or too long.
    """
    text = str(folder)
    hint = f"Point -p {name} at a folder you can write (it is created when missing)"
    hint += f", {alternative}." if alternative else "."

    def refuse(problem: str) -> ParameterError:
        return ParameterError(name, text, "", hint, message=f"{name} {shown_value(text)} {problem}.")

    if not text.strip():
        raise ParameterError(name, text, "a folder path, not empty", hint)
    if any(not ch.isprintable() for ch in text):
        raise ParameterError(name, text, "a path without control characters", hint)
    try:
        path = Path(text).expanduser().absolute()
        existing = path
        while not os.path.lexists(existing) and existing != existing.parent:
            existing = existing.parent
        if existing.is_symlink() and not existing.exists():
            raise refuse(f"cannot be created: {str(existing)!r} is a symbolic link to nowhere")
        if existing == path and not path.is_dir():
            raise refuse("is a file, not a folder")
        if not existing.is_dir():
            raise refuse(f"cannot be created: {str(existing)!r} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "is not writable" if existing == path else f"cannot be created: {str(existing)!r} is not writable"
            raise refuse(f"{what} (permissions or a read-only file system)")
        filesystem = _filesystem_of(existing)
        if filesystem in PSEUDO_FILESYSTEMS:
            raise refuse(f"cannot be created: {str(existing)!r} is on {filesystem}, a file system that holds no folders")
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        too_long = [part for part in path.relative_to(existing).parts if len(os.fsencode(part)) > name_max]
        if too_long or len(os.fsencode(str(path))) >= os.pathconf(existing, "PC_PATH_MAX"):
            raise refuse(f"cannot be created: a name in it is longer than the file system allows ({name_max} bytes)")
    except (OSError, RuntimeError, UnicodeError) as exc:  # RuntimeError: ~user without a home; UnicodeError: a lone surrogate
        raise refuse(f"cannot be checked ({exc})") from None


def _filesystem_of(path: Path) -> str:
    """The type of the file system holding `path` (Linux's mountinfo; empty where there is none)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    target, best, found = str(path.resolve()), -1, ""
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best:  # the longest match; of equals the last, which shadows the others
            best, found = len(mount_point), line.split(" - ", 1)[1].split()[0]
    return found
