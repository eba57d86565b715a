"""`python -m lib.prices`: daily prices of a few symbols as CSV, read without a JVM (the reader is
lib.analytics.prices; `lib.prices.read` is the same function, for Python callers). A ticker reads its security:
the bars of the span under every ticker that security traded (`EQNQ` prints ROGX's bars before the rename).

    python -m lib.prices MSFT SPX --start 2024-01-02 --end 2024-06-28 [--adjust raw|split|total_return]
        [--as-of 2024-06-28] [-f params/local.yaml] [-p warehouse W]
"""

from __future__ import annotations

import argparse
import logging
import sys

from lib.analytics.prices import COLUMNS, read
from lib.core.errors import ConfigError, WorkspaceError
from lib.core.vocabulary import ADJUSTMENTS
from lib.settings.command_line import add_params_arguments, config_from_args
from lib.settings.config import parse_ds

__all__ = ["read", "main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.prices", description=__doc__.split("\n")[0])
    parser.add_argument("symbols", nargs="+", metavar="SYMBOL", help="tickers, e.g. MSFT SPX (each reads its security)")
    parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", required=True, help="last day, YYYY-MM-DD")
    parser.add_argument("--adjust", default="split", choices=ADJUSTMENTS, help="default: split")
    parser.add_argument("--as-of", help="apply only the actions with ex_date on or before this day, YYYY-MM-DD")
    parser.add_argument("--as-of-run", help="read the tables as the run of this ds published them (its run-<ds> tag)")
    add_params_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.start, args.end = parse_ds(args.start, "--start"), parse_ds(args.end, "--end")
        args.as_of = parse_ds(args.as_of, "--as-of") if args.as_of is not None else None
        args.as_of_run = parse_ds(args.as_of_run, "--as-of-run") if args.as_of_run is not None else None
        if args.start > args.end:
            raise ConfigError(f"--start ({args.start}) is after --end ({args.end})")
        args.config = config_from_args(args)
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="lib.prices: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    try:
        frame = read(args.config, args.symbols, args.start, args.end, adjust=args.adjust, as_of=args.as_of,
                     as_of_run=args.as_of_run)  # fmt: skip
    except ConfigError as exc:
        print(f"python -m lib.prices: error: {exc}", file=sys.stderr)
        return 2
    except WorkspaceError as exc:
        print(f"python -m lib.prices: error: {exc}", file=sys.stderr)
        return 1
    # Each symbol without a bar is named on stderr already (the warnings); none of them known at all is an error.
    if frame.empty and len(frame.attrs["unknown_symbols"]) == len({s.strip().upper() for s in args.symbols if s.strip()}):
        print(f"python -m lib.prices: error: the warehouse has no prices of {', '.join(frame.attrs['unknown_symbols'])}: "
              "check the tickers (python -m lib.dashboard lists the warehouse's symbols)", file=sys.stderr)  # fmt: skip
        return 1
    frame.to_csv(sys.stdout, index=False, columns=list(COLUMNS), lineterminator="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
