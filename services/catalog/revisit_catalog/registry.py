"""The catalog's record in PostGIS: subscriptions (AOIs), scene versions, what was
published for which AOI, and the search cursors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shapely.geometry import shape
from shapely.ops import unary_union
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from revisit_catalog.handler import Published, Subscription
from revisit_catalog.stac import COLLECTIONS, version
from revisit_common import events_pb2 as pb
from revisit_common.db.models import AOI_KINDS, Aoi, CatalogCursor, Scene, SceneProcessing
from revisit_common.events import (
    S1_INDICATORS_OF_KIND,
    SENTINEL1,
    SENTINEL2,
    indicators_of,
    to_datetime,
)

log = logging.getLogger("revisit_catalog")


def unusable_collections(kind: str, collections: Iterable[str]) -> tuple[list[str], str]:
    """The collections no indicator of an AOI of `kind` would read, and why (every kind
    needs Sentinel-2; only a parcels AOI's S1+S2 crop type reads Sentinel-1 as well)."""
    chosen = list(collections)
    sensors = {COLLECTIONS.get(c) for c in chosen}
    if SENTINEL2 not in sensors:
        return chosen, (
            f"every indicator of a {kind} AOI needs Sentinel-2 passes (the S1+S2 crop type "
            "too); add a Sentinel-2 collection"
        )
    if kind not in S1_INDICATORS_OF_KIND:
        radar = [c for c in chosen if COLLECTIONS.get(c) == SENTINEL1]
        return radar, f"no indicator of a {kind} AOI reads Sentinel-1 (only a parcels AOI's)"
    return [], ""


def watched_aoi(
    name: str,
    kind: str,
    geometry_wkt: str,
    collections: Iterable[str],
    season: tuple[str, str] | None,
) -> pb.Aoi:
    """The AOI as events carry it, with the sensors of its collections."""
    sensors = sorted({COLLECTIONS[c] for c in collections if c in COLLECTIONS}, reverse=True)
    return pb.Aoi(
        name=name,
        kind=kind,
        geometry_wkt=geometry_wkt,
        season_start=season[0] if season else "",
        season_end=season[1] if season else "",
        sensors=sensors,
    )


class SubscriptionError(ValueError):
    """An AOI that cannot be watched, with the reason."""


def read_aoi_geometry(path: Path) -> Any:
    """The geometry of a GeoJSON file (FeatureCollection, Feature or geometry), EPSG:4326;
    several features are merged into one (multi)geometry."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SubscriptionError(f"cannot read {path}: {exc}") from exc
    if data.get("type") == "FeatureCollection":
        geometries = [f.get("geometry") for f in data.get("features", [])]
    elif data.get("type") == "Feature":
        geometries = [data.get("geometry")]
    else:
        geometries = [data]
    if not geometries:
        raise SubscriptionError(f"{path}: no geometry")
    geom = unary_union([_geometry(g, str(path)) for g in geometries])
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise SubscriptionError(f"{path}: coordinates are not longitude/latitude (EPSG:4326)")
    return geom


def _geometry(geojson: Any, where: str) -> Any:
    """A valid, non-empty shapely geometry from a GeoJSON geometry, or the reason why not."""
    try:
        geom = shape(geojson)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SubscriptionError(f"{where}: unreadable geometry: {exc}") from exc
    if geom.is_empty or not geom.is_valid:
        raise SubscriptionError(f"{where}: invalid or empty geometry")
    return geom


def make_subscription(
    name: str,
    kind: str,
    geometry_wkt: str,
    collections: Iterable[str] = ("sentinel-2-l2a",),
    max_cloud_cover: float | None = None,
    season: tuple[str, str] | None = None,
) -> Subscription:
    """A subscription, checked: known kind and collections, a cloud cover in percent."""
    if not name:
        raise SubscriptionError("an AOI needs a name")
    if kind not in AOI_KINDS:
        raise SubscriptionError(f"AOI {name!r}: kind {kind!r} is not one of {AOI_KINDS}")
    chosen = tuple(collections)
    unknown = [c for c in chosen if c not in COLLECTIONS]
    if not chosen or unknown:
        raise SubscriptionError(
            f"AOI {name!r}: unknown collections {unknown} (known: {sorted(COLLECTIONS)})"
        )
    unusable, why = unusable_collections(kind, chosen)
    if unusable:
        raise SubscriptionError(f"AOI {name!r}: {unusable}: {why}")
    if max_cloud_cover is not None and not 0 <= max_cloud_cover <= 100:
        raise SubscriptionError(f"AOI {name!r}: max cloud cover {max_cloud_cover} is not 0..100")
    try:
        return Subscription(
            watched_aoi(name, kind, geometry_wkt, chosen, season),
            chosen,
            max_cloud_cover,
            season,
        )
    except ValueError as exc:
        raise SubscriptionError(f"AOI {name!r}: {exc}") from exc


def load_subscriptions(path: Path) -> list[Subscription]:
    """AOIs from a GeoJSON FeatureCollection whose features have the properties `name`,
    `kind` and optionally `collections`, `max_cloud_cover`, `season` ["MM-DD", "MM-DD"]."""
    try:
        collection = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SubscriptionError(f"cannot read the AOI file {path}: {exc}") from exc
    subs = []
    for i, feature in enumerate(collection.get("features", [])):
        props = feature.get("properties") or {}
        geom = _geometry(feature.get("geometry"), f"{path}: feature {i}")
        season = props.get("season")
        subs.append(
            make_subscription(
                str(props.get("name") or ""),
                str(props.get("kind") or ""),
                geom.wkt,
                props.get("collections") or ("sentinel-2-l2a",),
                props.get("max_cloud_cover"),
                (str(season[0]), str(season[1])) if season else None,
            )
        )
    return subs


def save_subscriptions(engine: Engine, subs: Iterable[Subscription]) -> None:
    """Insert or replace AOIs by name."""
    with engine.begin() as conn:
        for sub in subs:
            values = {
                "name": sub.aoi.name,
                "kind": sub.aoi.kind,
                "geom": func.ST_GeomFromText(sub.aoi.geometry_wkt, 4326),
                "collections": list(sub.collections),
                "max_cloud_cover": sub.max_cloud_cover,
                "season_start": sub.season[0] if sub.season else None,
                "season_end": sub.season[1] if sub.season else None,
            }
            stmt = insert(Aoi).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[Aoi.name],
                    set_={k: stmt.excluded[k] for k in values if k != "name"},
                )
            )


def subscriptions(engine: Engine, names: Iterable[str] | None = None) -> list[Subscription]:
    """The AOIs in PostGIS (all, or those named), oldest first."""
    query = select(
        Aoi.name,
        Aoi.kind,
        func.ST_AsText(Aoi.geom),
        Aoi.collections,
        Aoi.max_cloud_cover,
        Aoi.season_start,
        Aoi.season_end,
    ).order_by(Aoi.id)
    if names is not None:
        query = query.where(Aoi.name.in_(list(names)))
    subs = []
    with engine.connect() as conn:
        for name, kind, geom_wkt, collections, max_cloud, start, end in conn.execute(query):
            season = (start, end) if start and end else None
            unusable, why = unusable_collections(kind, collections)
            if unusable:  # stored by hand, or before `make_subscription` refused them
                log.warning("catalog: AOI %s: %s not searched: %s", name, unusable, why)
                collections = [c for c in collections if c not in unusable]
                if not collections:
                    continue
            aoi = watched_aoi(name, kind, geom_wkt, collections, season)
            subs.append(Subscription(aoi, tuple(collections), max_cloud, season))
    return subs


def published(engine: Engine, acquisition_keys: Iterable[str]) -> dict[tuple[str, str], Published]:
    """The newest version published per (acquisition key, AOI name), for the keys given."""
    keys = sorted(set(acquisition_keys))
    if not keys:
        return {}
    query = (
        select(
            Scene.acquisition_key,
            Aoi.name,
            Scene.id,
            Scene.processing_baseline,
            Scene.generated_at,
            Scene.acquired_at,
        )
        .join(SceneProcessing, SceneProcessing.scene_id == Scene.id)
        .join(Aoi, Aoi.id == SceneProcessing.aoi_id)
        .where(Scene.acquisition_key.in_(keys))
    )
    found: dict[tuple[str, str], Published] = {}
    with engine.connect() as conn:
        for key, aoi, scene_id, baseline, generated, acquired in conn.execute(query):
            if key is None:
                continue
            entry = Published(scene_id, version(baseline, generated), acquired)
            held = found.get((key, aoi))
            if held is None or entry.version > held.version:
                found[(key, aoi)] = entry
    return found


def _scene_values(event: pb.SceneDiscovered) -> dict[str, Any]:
    return {
        "id": event.header.scene_id,
        "collection": event.collection,
        "tile_id": event.tile_id,
        "acquired_at": to_datetime(event.header.acquired_at),
        "cloud_cover": event.cloud_cover if event.cloud_cover >= 0 else None,
        "processing_baseline": event.processing_baseline or None,
        "footprint": func.ST_GeomFromText(event.footprint_wkt, 4326),
        "acquisition_key": event.acquisition_key,
        "sensor": event.sensor,
        "platform": event.platform,
        "source": event.source,
        "generated_at": (
            to_datetime(event.product_generated_at)
            if event.HasField("product_generated_at")
            else None
        ),
        "reprocessed": event.reprocessed,
    }


def record_scenes(engine: Engine, events: Iterable[pb.SceneDiscovered]) -> None:
    """Record scene versions, before their events are published (rows downstream refer
    to them); a reprocessed version marks the one it replaces as superseded."""
    with engine.begin() as conn:
        for event in events:
            values = _scene_values(event)
            stmt = insert(Scene).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[Scene.id],
                    # the acquisition time stays: rows downstream are keyed by it
                    set_={k: stmt.excluded[k] for k in values if k not in ("id", "acquired_at")},
                )
            )
            if event.replaces_scene_id and event.replaces_scene_id != event.header.scene_id:
                conn.execute(
                    update(Scene)
                    .where(Scene.id == event.replaces_scene_id)
                    .values(superseded_by=event.header.scene_id)
                )


def mark_published(engine: Engine, events: Iterable[pb.SceneDiscovered]) -> None:
    """Remember that scenes were published for their AOI (after the broker acknowledged)."""
    with engine.begin() as conn:
        for event in events:
            aoi_id = select(Aoi.id).where(Aoi.name == event.aoi.name).scalar_subquery()
            for indicator in indicators_of(event.aoi, event.sensor):
                conn.execute(
                    insert(SceneProcessing)
                    .values(
                        scene_id=event.header.scene_id,
                        aoi_id=aoi_id,
                        indicator=indicator,
                        status="discovered",
                        discovered_at=to_datetime(event.header.discovered_at),
                    )
                    .on_conflict_do_nothing()
                )


@dataclass(frozen=True)
class Cursor:
    """How far one search has got: up to `position`, within [range_start, range_end)."""

    position: datetime
    range_start: datetime | None = None
    range_end: datetime | None = None


def read_cursor(engine: Engine, aoi: str, source: str, collection: str, mode: str) -> Cursor | None:
    query = (
        select(CatalogCursor.position, CatalogCursor.range_start, CatalogCursor.range_end)
        .join(Aoi, Aoi.id == CatalogCursor.aoi_id)
        .where(
            Aoi.name == aoi,
            CatalogCursor.source == source,
            CatalogCursor.collection == collection,
            CatalogCursor.mode == mode,
        )
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return Cursor(row[0], row[1], row[2]) if row else None


def save_cursor(
    engine: Engine, aoi: str, source: str, collection: str, mode: str, cursor: Cursor
) -> None:
    with engine.begin() as conn:
        aoi_id = conn.execute(select(Aoi.id).where(Aoi.name == aoi)).scalar_one()
        values = {
            "position": cursor.position,
            "range_start": cursor.range_start,
            "range_end": cursor.range_end,
            "updated_at": datetime.now(UTC),
        }
        stmt = insert(CatalogCursor).values(
            aoi_id=aoi_id, source=source, collection=collection, mode=mode, **values
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["aoi_id", "source", "collection", "mode"], set_=values
            )
        )
