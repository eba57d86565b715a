"""Command line: python -m lib.simulator --host 127.0.0.1 --port 8765 [--tickers N] [--latency-ms L] [--seed S] [faults]
[feed options]."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from lib.core.api_key import env_api_key
from lib.core.errors import ApiKeyConflictError
from lib.simulator.faults import DEFECT_KINDS, FAULT_KINDS, Defects, FaultSettings, parse_late_actions
from lib.simulator.feed import FeedSettings
from lib.simulator.server import ServerSettings, run


def parse_args(argv: list[str] | None = None) -> ServerSettings:
    parser = argparse.ArgumentParser(
        prog="python -m lib.simulator",
        description="A REST server compatible with Massive (formerly Polygon.io), with deterministic synthetic "
        "daily bars. Accepts only the key in $MASSIVE_API_KEY or $POLYGON_API_KEY when one is set, otherwise any "
        "non-empty key.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    parser.add_argument("--tickers", type=int, default=300,
                        help="size of the ticker universe (default 300); from 50 on, plus a cast of renamed "
                             "and reused tickers")
    parser.add_argument("--seed", type=int, default=42, help="data seed: same seed, same data (default 42)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added delay per request in ms (default 0)")
    parser.add_argument(
        "--as-of", default=None, metavar="YYYY-MM-DD",
        help="the simulator's today: no bar, listing or action after it; adjusted=true split-adjusts as of it "
        "(default: the real today in New York)",
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests that get a fault (0..1)")
    faults.add_argument(
        "--faults", default="429,500,503,reset,malformed,slow",
        help=f"comma-separated fault kinds drawn at random, of: {','.join(FAULT_KINDS)}",
    )
    faults.add_argument("--fail-tickers", default="", help="comma-separated tickers whose requests always fail with 500")
    faults.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429 (default 1)")
    faults.add_argument("--slow-ms", type=float, default=2000.0, help="delay of the 'slow' fault in ms (default 2000)")
    faults.add_argument("--fault-seed", type=int, default=None, help="seed of the fault draws (default: random)")
    faults.add_argument(
        "--defects", default="",
        help=f"defective bars KIND:TICKER:YYYY-MM-DD or KIND:TICKER:FROM..TO, comma-separated; KIND one of "
        f"{','.join(DEFECT_KINDS)} (halt: no bar, trading halted those days)",
    )
    faults.add_argument(
        "--late-actions", default="", metavar="TICKER:YYYY-MM-DD,...",
        help="splits and dividends of TICKER with an ex-date before the day are published only on that day (late)",
    )
    feed = parser.add_argument_group("websocket feed at /stocks (Massive's real-time protocol, minute aggregates AM)")
    feed.add_argument("--feed-day", default=None, metavar="YYYY-MM-DD",
                      help="the session whose minute bars the feed plays (default: the last one on or before today)")
    feed.add_argument("--feed-minutes-per-second", type=float, default=1.0,
                      help="session minutes played per second of wall clock, from the first subscription (default 1)")
    feed.add_argument("--feed-drops", default="",
                      help="comma-separated session minutes (0..389) after whose frame every connection is cut")
    feed.add_argument("--feed-duplicate-rate", type=float, default=0.0, help="fraction of bars sent twice (0..1)")
    feed.add_argument("--feed-correct-rate", type=float, default=0.0,
                      help="fraction of bars sent first with wrong values and corrected 3 minutes later (0..1)")
    feed.add_argument("--feed-refuse-key", default=None, help="a key the feed refuses (auth_failed)")
    feed.add_argument("--feed-start-delay", type=float, default=0.0,
                      help="seconds between the first subscription and the clock's start (default 0)")
    args = parser.parse_args(argv)
    if args.tickers < 1:
        parser.error(f"--tickers must be at least 1, got {args.tickers}")
    as_of = None
    if args.as_of:
        try:
            as_of = dt.date.fromisoformat(args.as_of)
        except ValueError:
            parser.error(f"--as-of must be a date as YYYY-MM-DD, got {args.as_of!r}")
    try:
        fault_settings = FaultSettings(
            rate=args.fault_rate,
            kinds=tuple(k.strip() for k in args.faults.split(",") if k.strip()),
            fail_tickers=frozenset(t.strip() for t in args.fail_tickers.split(",") if t.strip()),
            retry_after_s=args.retry_after,
            slow_ms=args.slow_ms,
            seed=args.fault_seed,
        )
        defects = Defects.parse(args.defects)
        late_actions = parse_late_actions(args.late_actions)
        feed_settings = FeedSettings(
            day=dt.date.fromisoformat(args.feed_day) if args.feed_day else None,
            minutes_per_second=args.feed_minutes_per_second,
            drops=tuple(int(m) for m in args.feed_drops.split(",") if m.strip()),
            duplicate_rate=args.feed_duplicate_rate,
            correct_rate=args.feed_correct_rate,
            refuse_key=args.feed_refuse_key or None,
            start_delay_s=args.feed_start_delay,
        )
        api_key = env_api_key() or None  # both variables set to different keys: refused, like a run
    except (ValueError, ApiKeyConflictError) as exc:
        parser.error(str(exc))
    return ServerSettings(
        host=args.host,
        port=args.port,
        tickers=args.tickers,
        seed=args.seed,
        latency_ms=args.latency_ms,
        api_key=api_key,
        faults=fault_settings,
        defects=defects,
        late_actions=late_actions,
        as_of=as_of,
        feed=feed_settings,
    )


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
