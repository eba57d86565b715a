"""python -m lib.dashboard -f params/local.yaml [-p warehouse W] [--port N]: serve the dashboard on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from lib.config import RunConfig, command_line_params
from lib.dashboard.data import Lake
from lib.dashboard.server import serve
from lib.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_PORT = 8050


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.dashboard", description=__doc__.split(":")[1].strip())
    parser.add_argument("-f", "--parameters-file", default=str(REPO / "params" / "local.yaml"), help="params YAML")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a parameter, e.g. -p warehouse /tmp/wh")  # fmt: skip
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    try:
        args.config = RunConfig.from_params(**command_line_params(args.parameters_file, args.parameter))
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="lib.dashboard: %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("lib.prices").setLevel(logging.ERROR)  # the page lists the adjustment's warnings itself
    args = parse_args(argv)

    def ready(url: str) -> None:
        print(f"dashboard of {Path(args.config.warehouse).resolve()}: open {url}  (Ctrl-C stops it)", flush=True)

    try:
        asyncio.run(serve(Lake(args.config), args.port, on_ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken
        print(f"python -m lib.dashboard: error: cannot listen on 127.0.0.1:{args.port}: {exc}. Try --port 0.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
