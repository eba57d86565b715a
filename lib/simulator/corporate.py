"""The corporate-action endpoints: /stocks/v1/splits and /stocks/v1/dividends (Massive's current ones) and the
deprecated /v3/reference/splits and /v3/reference/dividends, with their shapes, filters, sorting and paging.

The records come from `lib.simulator.data.action_records`; an action is listed from the day it is announced (a split
30 days before its execution date, a dividend on its declaration date), as of the simulator's today. `--late-actions`
holds a ticker's actions back until a day after their ex-date, as a vendor that publishes late does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from lib.simulator.data import action_records

_OPS = {"": lambda a, b: a == b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One listing: its action type, the record shape, the filterable fields (name -> kind), sorting and limits."""

    path: str
    action_type: str
    fields: dict[str, str]  # filterable field -> "text", "date", "number" or "bool"
    any_of: tuple[str, ...]  # fields that also take `<field>.any_of`
    default_sort: str  # the v1 form "field.desc"; v3 endpoints take sort=field and order=asc|desc
    default_limit: int
    max_limit: int
    v3: bool


SPLITS_V1 = Endpoint("/stocks/v1/splits", "split", {"ticker": "text", "execution_date": "date", "adjustment_type": "text"},
                     ("ticker", "adjustment_type"), "execution_date.desc", 100, 5000, v3=False)  # fmt: skip
DIVIDENDS_V1 = Endpoint(
    "/stocks/v1/dividends", "dividend",
    {"ticker": "text", "ex_dividend_date": "date", "frequency": "number", "distribution_type": "text"},
    ("ticker", "distribution_type"), "ex_dividend_date.desc", 100, 5000, v3=False,
)  # fmt: skip
SPLITS_V3 = Endpoint("/v3/reference/splits", "split", {"ticker": "text", "execution_date": "date", "reverse_split": "bool"},
                     (), "execution_date.desc", 10, 1000, v3=True)  # fmt: skip
DIVIDENDS_V3 = Endpoint(
    "/v3/reference/dividends", "dividend",
    {"ticker": "text", "ex_dividend_date": "date", "record_date": "date", "declaration_date": "date",
     "pay_date": "date", "frequency": "number", "cash_amount": "number", "dividend_type": "text"},
    (), "ex_dividend_date.desc", 10, 1000, v3=True,
)  # fmt: skip
ENDPOINTS = (SPLITS_V1, DIVIDENDS_V1, SPLITS_V3, DIVIDENDS_V3)


class QueryError(ValueError):
    """A parameter the endpoint cannot read: the message says what was expected and what came."""


def _adjustment_type(split_from: float, split_to: float) -> str:
    return "reverse_split" if split_from > split_to else "forward_split"


def served_records(endpoint: Endpoint, n: int, seed: int, today: dt.date, late: dict | None = None) -> list[dict]:
    """The endpoint's records as the API lists them on `today`, in (ticker, date) order. `late` (ticker -> day) holds
    back a ticker's actions whose ex-date is before that day until that day: a vendor that publishes them late."""
    late = late or {}

    def listed(record: dict) -> dt.date:
        held = late.get(record["ticker"])
        return max(record["announced"], held) if held is not None and record["ex_date"] < held else record["announced"]

    actions = [r for r in action_records(n, seed) if listed(r) <= today]
    splits_of: dict[str, list[dict]] = {}
    for record in actions:
        if record["action_type"] == "split":
            splits_of.setdefault(record["ticker"], []).append(record)
    records = []
    # historical_adjustment_factor: what a price before the ex-date is multiplied by to reach today's basis
    # (the product over this ticker's actions of the kind with ex-date on or after this one, up to today).
    later: dict[str, float] = {}
    for record in sorted((r for r in actions if r["action_type"] == endpoint.action_type),
                         key=lambda r: (r["ticker"], r["ex_date"]), reverse=True):  # fmt: skip
        ticker, applied = record["ticker"], record["ex_date"] <= today
        if endpoint.action_type == "split":
            step = record["split_from"] / record["split_to"] if applied else 1.0
            factor = later.get(ticker, 1.0) * step
            later[ticker] = factor
            out = {"id": record["id"], "ticker": ticker, "execution_date": record["ex_date"].isoformat(),
                   "split_from": float(record["split_from"]), "split_to": float(record["split_to"])}  # fmt: skip
            if endpoint.v3:
                out = {"execution_date": out["execution_date"], "id": out["id"], "split_from": record["split_from"],
                       "split_to": record["split_to"], "ticker": ticker}  # fmt: skip
            else:
                out["adjustment_type"] = _adjustment_type(record["split_from"], record["split_to"])
                out["historical_adjustment_factor"] = factor
        else:
            step = (1.0 - record["yield"]) if applied else 1.0
            factor = later.get(ticker, 1.0) * step
            later[ticker] = factor
            out = {"cash_amount": record["cash_amount"], "currency": "USD",
                   "declaration_date": record["declaration_date"].isoformat()}  # fmt: skip
            if endpoint.v3:
                out["dividend_type"] = "CD"
            else:
                out["distribution_type"] = "recurring"
            out |= {"ex_dividend_date": record["ex_date"].isoformat(), "frequency": 4}
            if not endpoint.v3:
                out["historical_adjustment_factor"] = factor
            out |= {"id": record["id"], "pay_date": record["pay_date"].isoformat(),
                    "record_date": record["record_date"].isoformat()}  # fmt: skip
            if not endpoint.v3:
                out["split_adjusted_cash_amount"] = _split_adjusted(record, splits_of.get(ticker, ()), today)
            out["ticker"] = ticker
        records.append(out)
    records.reverse()
    return records


def _split_adjusted(dividend: dict, splits: list[dict], today: dt.date) -> float:
    """The cash amount on today's share basis: times split_from / split_to of the ticker's splits after the ex-date."""
    factor = 1.0
    for split in splits:
        if dividend["ex_date"] < split["ex_date"] <= today:
            factor *= split["split_from"] / split["split_to"]
    return round(dividend["cash_amount"] * factor, 6)


def _value(kind: str, text: str, name: str):
    if kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise QueryError(f"Could not parse the {name} parameter: expected a number, got '{text}'.") from None
        if not math.isfinite(value):
            raise QueryError(f"Could not parse the {name} parameter: expected a finite number, got '{text}'.")
        return value
    if kind == "date":
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise QueryError(f"Could not parse the {name} parameter: expected a date as YYYY-MM-DD, got '{text}'.") from None
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise QueryError(f"Could not parse the {name} parameter: expected true or false, got '{text}'.")
        return text.lower() == "true"
    return text


def filter_params(endpoint: Endpoint) -> tuple[str, ...]:
    """Every query parameter that filters this endpoint."""
    names = []
    for field, kind in endpoint.fields.items():
        names.append(field)
        if kind in ("date", "number") or field == "ticker":
            names += [f"{field}.{op}" for op in ("gt", "gte", "lt", "lte")]
        if field in endpoint.any_of:
            names.append(f"{field}.any_of")
    return tuple(names)


def select(endpoint: Endpoint, records: list[dict], filters: dict[str, str]) -> list[dict]:
    """The records that pass every filter, sorted as asked (`sort`, and `order` on the v3 endpoints)."""
    chosen = records
    for name, text in filters.items():
        if name in ("sort", "order"):
            continue
        field, _, op = name.partition(".")
        kind = endpoint.fields[field]
        if field == "reverse_split":
            wanted = _value("bool", text, name)
            chosen = [r for r in chosen if (r["split_from"] > r["split_to"]) == wanted]
        elif op == "any_of":
            allowed = {item.strip() for item in text.split(",") if item.strip()}
            chosen = [r for r in chosen if str(r.get(field)) in allowed]
        else:
            wanted = _value(kind, text, name)
            test = _OPS[op]
            chosen = [r for r in chosen if r.get(field) is not None and test(r[field], wanted)]
    keys = _sort_keys(endpoint, filters)
    for field, descending in reversed(keys):  # stable sorts, last key first
        chosen = sorted(chosen, key=lambda r, f=field: (r.get(f) is None, r.get(f) or ""), reverse=descending)
    return chosen


def _sort_keys(endpoint: Endpoint, filters: dict[str, str]) -> list[tuple[str, bool]]:
    sortable = [*endpoint.fields, "id"] if not endpoint.v3 else [f for f in endpoint.fields if f != "reverse_split"]
    if endpoint.v3:
        field = filters.get("sort") or endpoint.default_sort.split(".")[0]
        order = filters.get("order") or "desc"
        if field not in sortable:
            raise QueryError(f"The sort parameter must be one of {', '.join(sortable)}; got '{field}'.")
        if order not in ("asc", "desc"):
            raise QueryError(f"The order parameter must be asc or desc, got '{order}'.")
        return [(field, order == "desc"), ("ticker", False)]
    keys = []
    for item in (filters.get("sort") or endpoint.default_sort).split(","):
        field, _, direction = item.strip().partition(".")
        direction = direction or "asc"
        if field not in sortable or direction not in ("asc", "desc"):
            raise QueryError(
                f"The sort parameter takes comma-separated FIELD.asc or FIELD.desc with FIELD one of "
                f"{', '.join(sortable)}; got '{item.strip()}'."
            )
        keys.append((field, direction == "desc"))
    return keys + [("ticker", False)]
