"""`revisit aoi add|list` and `revisit catalog backfill`: subscriptions in PostGIS, and
searching a catalog over a past period with the catalog service's own code."""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from revisit_cli.stack import command_database_url, command_kafka_bootstrap


def _settings(args: argparse.Namespace) -> Any:
    """Catalog settings: flags, else REVISIT_* variables, else the embedded stack's."""
    from revisit_catalog.main import CatalogSettings

    overrides: dict[str, Any] = {
        "database_url": command_database_url(getattr(args, "database_url", None)),
        "kafka_bootstrap": command_kafka_bootstrap(getattr(args, "kafka", None)),
    }
    if getattr(args, "source", None):
        overrides["catalog_source"] = args.source
    return CatalogSettings(**overrides)


def _day(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _season(text: str) -> tuple[str, str]:
    start, sep, end = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not MM-DD:MM-DD")
    return start, end


def cmd_aoi(args: argparse.Namespace) -> int:
    from revisit_catalog.registry import (
        SubscriptionError,
        make_subscription,
        read_aoi_geometry,
        save_subscriptions,
    )
    from revisit_common.db.models import Aoi

    engine = create_engine(_settings(args).database_url)
    try:
        if args.action == "add":
            if not args.file or not args.kind:
                raise SubscriptionError("aoi add needs NAME FILE --kind")
            geom = read_aoi_geometry(args.file)
            sub = make_subscription(
                args.name,
                args.kind,
                geom.wkt,
                args.collections.split(","),
                args.max_cloud,
                args.season,
            )
            save_subscriptions(engine, [sub])
            print(
                f"AOI {args.name!r} saved: {args.kind}, {', '.join(sub.collections)}, "
                f"{geom.area:.4f} square degrees"
            )
            return 0
        query = select(
            Aoi.name,
            Aoi.kind,
            Aoi.collections,
            Aoi.max_cloud_cover,
            Aoi.season_start,
            Aoi.season_end,
            func.ST_Area(func.geography(Aoi.geom)) / 1e6,
        ).order_by(Aoi.name)
        with engine.connect() as conn:
            rows = list(conn.execute(query))
        print(f"{'name':24} {'kind':8} {'km²':>10}  {'max cloud':>9}  {'season':11}  collections")
        for name, kind, collections, cloud, start, end, km2 in rows:
            season = f"{start}:{end}" if start else "all year"
            cloud_text = f"{cloud:.0f} %" if cloud is not None else "any"
            print(
                f"{name:24} {kind:8} {km2:10.1f}  {cloud_text:>9}  {season:11}  "
                + ", ".join(collections)
            )
        print(f"{len(rows)} AOI(s)")
        return 0
    except SubscriptionError as exc:
        print(f"error: {exc}")
        return 2
    finally:
        engine.dispose()


def cmd_catalog(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from revisit_catalog.ingest import Ingest, Summary
    from revisit_catalog.registry import subscriptions
    from revisit_common.errors import TransientError
    from revisit_common.runtime import ServiceApp

    settings = _settings(args)
    engine = create_engine(settings.database_url)
    found = subscriptions(engine, [args.aoi])
    if not found:
        print(f"error: no AOI named {args.aoi!r} (see `revisit aoi list`)")
        return 2
    (sub,) = found
    if args.to <= args.start:
        print("error: --to must be after --from")
        return 2
    step = timedelta(days=args.step_days)
    app = ServiceApp("catalog", settings)
    app.install_signal_handlers()
    ingest = Ingest(app, engine, settings.source())
    done = 0  # windows searched by an earlier run of the same backfill
    for collection in sub.collections:
        position = ingest.backfill_position(sub, collection, args.start, args.to)
        if position > args.start:
            done += math.ceil((position - args.start) / step)
            print(f"{collection}: resuming the backfill at {position:%Y-%m-%d %H:%M}")
    windows = math.ceil((args.to - args.start) / step) * len(sub.collections)
    t0 = time.monotonic()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} windows"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(f"backfill {args.aoi}", total=windows, completed=done, status="")

        def progress(position: datetime, summary: Summary) -> None:
            bar.update(
                task,
                completed=done + summary.windows,
                status=f"to {position:%Y-%m-%d}: {summary.outcomes['published']} new",
            )

        try:
            summary = ingest.backfill(sub, args.start, args.to, step, progress)
        except TransientError as exc:
            print(f"error: {exc} — run the same command again to resume")
            return 1
        finally:
            app.close()
            engine.dispose()
    interrupted = " (interrupted: run it again to resume)" if app.stop.is_set() else ""
    print(
        f"backfill of {args.aoi} from {args.start:%Y-%m-%d} to {args.to:%Y-%m-%d} "
        f"on {ingest.source.name}{interrupted}: {summary.line()} "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return 130 if interrupted else 0


def add_parsers(sub: Any) -> None:
    aoi = sub.add_parser("aoi", help="the areas of interest the catalog watches (in PostGIS)")
    aoi.add_argument("action", choices=["add", "list"])
    aoi.add_argument("name", nargs="?", default="", help="AOI name (add)")
    aoi.add_argument("file", nargs="?", type=Path, help="GeoJSON, EPSG:4326 (add)")
    aoi.add_argument("--kind", choices=["parcels", "city", "region"])
    aoi.add_argument(
        "--collections", default="sentinel-2-l2a", help="comma-separated [sentinel-2-l2a]"
    )
    aoi.add_argument("--max-cloud", type=float, help="maximum cloud cover, percent")
    aoi.add_argument("--season", type=_season, help="yearly window MM-DD:MM-DD")
    aoi.add_argument("--database-url", help="SQLAlchemy URL (default: the embedded stack's)")
    aoi.set_defaults(func=cmd_aoi)

    catalog = sub.add_parser("catalog", help="search a STAC catalog over a past period")
    catalog.add_argument("action", choices=["backfill"])
    catalog.add_argument("--aoi", required=True)
    catalog.add_argument("--from", dest="start", type=_day, required=True, help="YYYY-MM-DD")
    catalog.add_argument("--to", type=_day, required=True, help="YYYY-MM-DD (excluded)")
    catalog.add_argument("--step-days", type=float, default=7.0, help="days per search [7]")
    catalog.add_argument(
        "--source",
        help="earth-search, planetary-computer, cdse, a URL or a file "
        "(default: REVISIT_CATALOG_SOURCE, else earth-search)",
    )
    catalog.add_argument("--database-url", help="SQLAlchemy URL (default: the embedded stack's)")
    catalog.add_argument("--kafka", help="bootstrap servers (default: the embedded stack's)")
    catalog.set_defaults(func=cmd_catalog)
