"""python -m lib.dashboard -f params/local.yaml [-p warehouse W] [--port N]: serve the dashboard on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from lib.core.errors import ConfigError
from lib.dashboard.data import Lake
from lib.dashboard.server import serve
from lib.settings.command_line import add_params_arguments, config_from_args

DEFAULT_PORT = 8050


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.dashboard", description=__doc__.split(":")[1].strip())
    add_params_arguments(parser)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    try:
        args.config = config_from_args(args)
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
