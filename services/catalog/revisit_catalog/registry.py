"""The catalog's record in PostGIS: AOIs, scenes and what has been published for which AOI."""

from __future__ import annotations

import json
from pathlib import Path

from shapely.geometry import shape
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from revisit_catalog.handler import Subscription
from revisit_common import events_pb2 as pb
from revisit_common.db.models import AOI_KINDS, Aoi, Scene, SceneProcessing
from revisit_common.events import to_datetime

#: The indicator each kind of AOI gets (more kinds and indicators come with later issues).
INDICATOR_OF_KIND = {"city": "lcz"}


def load_subscriptions(path: Path) -> list[Subscription]:
    """AOIs from a GeoJSON FeatureCollection with `name` and `kind` properties (EPSG:4326)."""
    try:
        collection = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the AOI file {path}: {exc}") from exc
    subs = []
    for i, feature in enumerate(collection.get("features", [])):
        props = feature.get("properties") or {}
        name, kind = props.get("name"), props.get("kind")
        if not name or kind not in AOI_KINDS:
            raise SystemExit(
                f"{path}: feature {i} needs properties name and kind (one of {AOI_KINDS})"
            )
        geom = shape(feature["geometry"])
        if not geom.is_valid or geom.is_empty:
            raise SystemExit(f"{path}: feature {name!r} has an invalid or empty geometry")
        collections = tuple(props.get("collections") or ("sentinel-2-l2a",))
        subs.append(Subscription(pb.Aoi(name=name, kind=kind, geometry_wkt=geom.wkt), collections))
    return subs


def save_subscriptions(engine: Engine, subs: list[Subscription]) -> None:
    with engine.begin() as conn:
        for sub in subs:
            stmt = insert(Aoi).values(
                name=sub.aoi.name,
                kind=sub.aoi.kind,
                geom=func.ST_GeomFromText(sub.aoi.geometry_wkt, 4326),
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[Aoi.name],
                    set_={"kind": stmt.excluded.kind, "geom": stmt.excluded.geom},
                )
            )


def published(engine: Engine) -> set[tuple[str, str]]:
    """(scene id, AOI name) pairs already published."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(SceneProcessing.scene_id, Aoi.name).join(Aoi, Aoi.id == SceneProcessing.aoi_id)
        )
        return {(scene, aoi) for scene, aoi in rows}


def record_scene(engine: Engine, event: pb.SceneDiscovered) -> None:
    """Record the scene itself, before its event is published (rows downstream refer to it)."""
    with engine.begin() as conn:
        conn.execute(
            insert(Scene)
            .values(
                id=event.header.scene_id,
                collection=event.collection,
                tile_id=event.tile_id,
                acquired_at=to_datetime(event.header.acquired_at),
                cloud_cover=event.cloud_cover if event.cloud_cover >= 0 else None,
                processing_baseline=event.processing_baseline or None,
                footprint=func.ST_GeomFromText(event.footprint_wkt, 4326),
            )
            .on_conflict_do_nothing()
        )


def mark_published(engine: Engine, event: pb.SceneDiscovered) -> None:
    """Remember that the scene was published for its AOI (after the broker acknowledged)."""
    indicator = INDICATOR_OF_KIND.get(event.aoi.kind, event.aoi.kind)
    with engine.begin() as conn:
        aoi_id = select(Aoi.id).where(Aoi.name == event.aoi.name).scalar_subquery()
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
