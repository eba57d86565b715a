"""`python -m lib.wap status|publish|drop --branch B`: look at an audit branch that did not publish, publish it after a
human decision, or drop it (the library is lib.storage.wap).

    python -m lib.wap status  --branch audit_2024_03_28 [-f params/local.yaml] [-p NAME VALUE ...]
    python -m lib.wap publish --branch audit_2024_03_28 [--ds 2024-03-28] [--start-ds S] [-f ...]
    python -m lib.wap drop    --branch audit_2024_03_28 [-f ...]
"""

from __future__ import annotations

import argparse
import sys

from lib.core.errors import ConfigError, WorkspaceError
from lib.running import runtime
from lib.settings.command_line import add_params_arguments, config_from_args
from lib.settings.config import RunConfig
from lib.storage.wap import branch_status, drop, publish, span_of_branch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.wap", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("status", "publish", "drop"))
    parser.add_argument("--branch", required=True, help="the audit branch, e.g. audit_2024_03_28")
    parser.add_argument("--ds", help="the run's ds (default: from a branch named audit_YYYY_MM_DD)")
    parser.add_argument("--start-ds", help="the run's start_ds, for a range run")
    add_params_arguments(parser)
    return parser.parse_args(argv)


def _config(args: argparse.Namespace) -> RunConfig:
    span = span_of_branch(args.branch)
    fixed = {"wap_branch": args.branch}
    if args.ds:
        fixed["ds"], fixed["start_ds"] = args.ds, args.start_ds or args.ds
    elif span:
        fixed["start_ds"], fixed["ds"] = (str(d) for d in span)
    elif args.action == "publish":
        raise ConfigError(f"--ds is needed to publish {args.branch!r} (its name does not say the run's ds)")
    return config_from_args(args, **fixed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = _config(args)
    except WorkspaceError as exc:
        print(f"python -m lib.wap: error: {exc}", file=sys.stderr)
        return 2
    spark = runtime.spark_session(config)
    try:
        if args.action == "status":
            for row in branch_status(spark, config):
                state = "staged" if row["branch_snapshot"] else "no branch"
                print(f"{row['table']:<22} {state:<9} branch {row['branch_snapshot']}  main {row['main_snapshot']}  "
                      f"metadata {row['metadata_file']}")  # fmt: skip
            print("DuckDB: SELECT * FROM iceberg_scan('<metadata>', snapshot_from_id = <branch snapshot>)")
        elif args.action == "publish":
            print(publish(spark, config).summary())
        else:
            dropped = drop(spark, config)
            print(f"dropped {config.wap_branch} from {', '.join(dropped)}" if dropped else f"no table has {config.wap_branch}")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
