"""Run every benchmark module (benchmarks/bench_*.py) or the ones named: python -m benchmarks [name ...]."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available())}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; available: {available()}")
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.monotonic()
        print(f"== {name}: {module.__doc__.strip().splitlines()[0]}")
        module.main(quick=args.quick)
        print(f"== {name} done in {time.monotonic() - started:.0f}s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
