"""Vectorised JSON for many daily bars: numpy writes the digits, so a 25-year range costs a few milliseconds.

The bytes equal json.dumps(bars, separators=(",", ":")) for the simulator's bars (non-negative values below
1e15, prices with at most 4 decimals, integral volumes); the tests check that. Arrays are laid out one row
per output byte position and one column per bar, so every numpy operation runs on contiguous memory.
"""

from __future__ import annotations

import json

import numpy as np

_SPACE = 32  # padding, removed at the end (no value printed here contains a space)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers below 1e15 as right-aligned ASCII digits (width x N), leading zeros blanked.

    Float division is exact enough here: for integers below 9e15, floor(v / 10**k) is the true quotient.
    """
    column = np.asarray(values, dtype=np.float64)
    powers = 10.0 ** np.arange(width - 1, -1, -1)[:, None]
    quotients = np.floor(column[None, :] / powers)
    digits = (quotients - np.floor(quotients / 10.0) * 10.0 + 48.0).astype(np.uint8)
    leading = quotients == 0
    leading[-1] = False  # zero prints as "0"
    digits[leading] = _SPACE
    return digits


def _price(values: np.ndarray) -> list[np.ndarray]:
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 10000.0)
    whole = np.floor(scaled / 10000.0)
    frac = _digits(scaled - whole * 10000.0 + 10000.0, 5)[1:]  # four digits, leading zeros kept
    # Drop trailing zeros of the fraction, keeping one digit: 5.5170 -> 5.517, 12.0000 -> 12.0 (as repr does).
    for i in (3, 2, 1):
        blank = frac[i] == 48
        if i < 3:
            blank &= frac[i + 1] == _SPACE
        frac[i, blank] = _SPACE
    return [_digits(whole, 7), _const(b".", len(values)), frac]


def _const(text: bytes, rows: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8)[:, None], (len(text), rows))


def range_bars_json(v, vw, o, c, h, low, t, n) -> bytes:
    """'[{"v":..,"vw":..,"o":..,"c":..,"h":..,"l":..,"t":..,"n":..},...]' from equal-length arrays."""
    return bars_json(v, vw, o, c, h, low, t, n)


def ticker_prefixes(symbols: list[str]) -> np.ndarray:
    """'{"T":"AAPL",' for each symbol, as rows of a (width x N) byte array padded with spaces."""
    encoded = [f'{{"T":{json.dumps(s)},'.encode() for s in symbols]
    width = max((len(e) for e in encoded), default=0)
    padded = np.frombuffer(b"".join(e.ljust(width) for e in encoded), dtype=np.uint8)
    return np.ascontiguousarray(padded.reshape(len(encoded), width).T)


def bars_json(v, vw, o, c, h, low, t, n, prefixes: np.ndarray | None = None) -> bytes:
    """The bars as a JSON array; with prefixes (from ticker_prefixes) each bar starts with its "T" (grouped shape)."""
    rows = len(t)
    if rows == 0:
        return b"[]"
    start = [_const(b'{"v":', rows)] if prefixes is None else [prefixes, _const(b'"v":', rows)]
    pieces = [*start, _digits(v, 13), _const(b'.0,"vw":', rows), *_price(vw)]
    for key, column in ((b'"o":', o), (b'"c":', c), (b'"h":', h), (b'"l":', low)):
        pieces += [_const(b"," + key, rows), *_price(column)]
    pieces += [_const(b',"t":', rows), _digits(t, 14), _const(b',"n":', rows), _digits(n, 11), _const(b"},", rows)]
    flat = np.ascontiguousarray(np.concatenate(pieces, axis=0).T).ravel()
    return b"[" + flat[flat != _SPACE].tobytes()[:-1] + b"]"
