"""Entry point of the catalog service: `python -m revisit_catalog`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pystac
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError

from revisit_catalog.handler import Subscription, discover
from revisit_catalog.registry import (
    load_subscriptions,
    mark_published,
    published,
    record_scene,
    save_subscriptions,
)
from revisit_common import events_pb2 as pb
from revisit_common.errors import TransientError
from revisit_common.events import SCENES_TOPIC, dlq_topic, now, timestamp
from revisit_common.runtime import Output, ServiceApp, configure_logging
from revisit_common.settings import ServiceSettings

log = logging.getLogger("revisit_catalog")


class CatalogSettings(ServiceSettings):
    """Catalog settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_DATABASE_URL``: PostGIS, SQLAlchemy URL.
    - ``REVISIT_CATALOG_SOURCE``: a static STAC catalog (catalog.json) or ItemCollection file.
    - ``REVISIT_CATALOG_AOI_FILE``: GeoJSON of the AOIs to watch (name, kind properties).
    - ``REVISIT_CATALOG_POLL_INTERVAL_S``: seconds between two polls.
    """

    database_url: str = "postgresql+psycopg://revisit@127.0.0.1:15432/revisit"
    catalog_source: Path = Path(".revisit/demo/catalog/catalog.json")
    catalog_aoi_file: Path = Path("infra/demo/aoi.geojson")
    catalog_poll_interval_s: float = 10.0


def read_items(source: Path) -> list[pystac.Item]:
    """Every item of a static catalog, an ItemCollection or a single item file."""
    try:
        kind = json.loads(source.read_text()).get("type")
        if kind == "FeatureCollection":
            return list(pystac.ItemCollection.from_file(str(source)))
        stac = pystac.read_file(str(source))
    except (OSError, ValueError, pystac.STACError) as exc:
        raise TransientError(f"cannot read the STAC source {source}: {exc}") from exc
    if isinstance(stac, pystac.Catalog):
        return list(stac.get_items(recursive=True))
    if isinstance(stac, pystac.Item):
        return [stac]
    raise TransientError(f"{source} is a STAC {type(stac).__name__}, not a catalog or items")


def poll_once(
    app: ServiceApp, settings: CatalogSettings, engine: Engine, subs: list[Subscription]
) -> int:
    """Publish the scenes not published yet for `subs`; returns how many."""
    seen = published(engine)
    found = discover(read_items(settings.catalog_source), subs, lambda s, a: (s, a) in seen, now())
    for item, error in found.rejected:
        letter = pb.DeadLetter(
            stage="catalog",
            source_topic=str(settings.catalog_source),
            value=json.dumps(item.to_dict(transform_hrefs=False)).encode(),
            key=item.id.encode(),
            error_type=type(error).__name__,
            error=str(error),
            failed_at=timestamp(now()),
        )
        app.metrics.dead_lettered.labels(dlq_topic(SCENES_TOPIC)).inc()
        log.error("catalog: item %s to DLQ: %s", item.id, error)
        if not app.acknowledge(
            app.send([Output(dlq_topic(SCENES_TOPIC), item.id.encode(), letter)])
        ):
            raise TransientError("DLQ record not acknowledged")
    for scene in found.scenes:
        # Published first, marked after: a crash in between publishes the scene again,
        # which the idempotent stages downstream absorb; the reverse order could lose it.
        record_scene(engine, scene)
        if not app.acknowledge(app.send([Output(SCENES_TOPIC, scene.tile_id.encode(), scene)])):
            raise TransientError(f"scene {scene.header.scene_id} not acknowledged")
        mark_published(engine, scene)
        log.info("catalog: published %s for AOI %s", scene.header.scene_id, scene.aoi.name)
    return len(found.scenes)


def main() -> None:
    settings = CatalogSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("catalog", settings)
    app.install_signal_handlers()
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    # The AOI file is read once; its AOIs are saved once the database answers.
    subs = load_subscriptions(settings.catalog_aoi_file)
    saved = False
    app.state = "running"
    log.info(
        "catalog: watching %s every %.0f s",
        settings.catalog_source,
        settings.catalog_poll_interval_s,
    )
    while not app.stop.is_set():
        try:
            if not saved:
                save_subscriptions(engine, subs)
                saved = True
            poll_once(app, settings, engine, subs)
            app.metrics.last_success.set_to_current_time()
            app.state = "running"
        except (TransientError, OperationalError) as exc:
            app.metrics.failed.labels("transient").inc()
            app.state = "retrying"
            log.warning("catalog: poll failed, retrying: %s", exc)
        app.stop.wait(settings.catalog_poll_interval_s)
    app.close()
    engine.dispose()


if __name__ == "__main__":
    main()
