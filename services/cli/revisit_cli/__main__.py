"""The `revisit` command: the embedded stack, the demo, models, the database, AOIs and
catalog backfills."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from revisit_cli.areas import add_parsers as add_areas_parsers
from revisit_cli.catalog import add_parsers as add_catalog_parsers
from revisit_cli.dlq import add_parsers as add_dlq_parsers
from revisit_cli.features import add_parsers as add_features_parsers
from revisit_cli.models import add_train_parser
from revisit_cli.parcels import add_parsers as add_parcels_parsers
from revisit_cli.stack import COMPONENTS, StackConfig, StackError, down, format_status, status, up


def say(line: str) -> None:
    print(line, flush=True)


def cmd_stack(args: argparse.Namespace) -> int:
    config = StackConfig()
    if args.action == "up":
        from revisit_cli.demo import bring_up
        from revisit_cli.services import ServicesConfig

        if args.infra_only:
            up(config, progress=say)
        else:
            bring_up(config, ServicesConfig(), say)
    elif args.action == "down":
        stopped = down(config, progress=say)
        say(f"stopped: {', '.join(stopped) or 'nothing was running'}; no process of ours left")
    else:
        say(format_status(status(config)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from revisit_catalog.registry import load_subscriptions
    from revisit_catalog.stac import COLLECTIONS
    from revisit_cli.demo import (
        bring_up,
        indicator_tables,
        latency_summary,
        wait_for_scenes,
        where_to_look,
    )
    from revisit_cli.demo_data import read_cube
    from revisit_cli.services import ServicesConfig
    from revisit_common.events import indicators_of

    t0 = time.monotonic()
    config, services = StackConfig(), ServicesConfig()
    bring_up(config, services, say)
    months = len(read_cube().dates)
    # each month has one pass of each collection (Sentinel-2 and Sentinel-1)
    per_month = sum(
        len(indicators_of(s.aoi, COLLECTIONS[c]))
        for s in load_subscriptions(services.catalog_aoi_file)
        for c in s.collections
    )
    waited = wait_for_scenes(config.database_url, months * per_month, args.timeout, say)
    # the chain runs while the later services are still being checked: often done by then
    when = (
        f"{waited:.1f} s after the services were up"
        if waited >= 0.1
        else "by the time the services were all up"
    )
    say(
        f"\nAll {months} months of passes processed ({per_month} pass × indicator records a "
        f"month) {when}; {time.monotonic() - t0:.1f} s since `revisit demo` started.\n"
    )
    say(latency_summary(config.database_url))
    say(indicator_tables(config.database_url))
    say("")
    say(where_to_look(config, services))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from revisit_cli.models import build_models

    repository = StackConfig().triton_model_repository
    written = build_models(
        repository, force=args.force, instance_kind=args.instance_kind, instances=args.instances
    )
    say("\n".join(f"wrote {p}" for p in written) or "model repository up to date")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from revisit_common.db.migrate import downgrade, upgrade

    url = args.url or StackConfig().database_url
    (upgrade if args.action == "upgrade" else downgrade)(url)
    say(f"database {args.action} done")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="revisit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser(
        "stack", help="the embedded stack: " + ", ".join(COMPONENTS) + " and the services"
    )
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--infra-only", action="store_true", help="no services, infrastructure only")
    stack.set_defaults(func=cmd_stack)
    demo = sub.add_parser(
        "demo", help="start everything, feed the sample passes, show the LCZ cells"
    )
    demo.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for results")
    demo.set_defaults(func=cmd_demo)
    models = sub.add_parser(
        "models", help="build the Triton model repository from data/models and the LCZ weights"
    )
    models.add_argument("action", choices=["build"])
    models.add_argument("--force", action="store_true", help="rewrite existing files")
    models.add_argument(
        "--instance-kind", choices=["cpu", "gpu"], default="cpu", help="Triton instance group"
    )
    models.add_argument(
        "--instances",
        type=int,
        help="instances of each model (per GPU with --instance-kind gpu); default 2 on CPU, "
        "1 per GPU",
    )
    models.set_defaults(func=cmd_models)
    add_train_parser(sub)
    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument("--url", help="SQLAlchemy URL (default: the embedded stack's database)")
    db.set_defaults(func=cmd_db)
    add_catalog_parsers(sub)
    add_parcels_parsers(sub)
    add_areas_parsers(sub)
    add_dlq_parsers(sub)
    add_features_parsers(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # chatty during health checks
    try:
        return int(args.func(args))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
