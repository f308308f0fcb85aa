"""Parcels in PostGIS: loaded by register id, read back by AOI and scene footprint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from revisit_common.db.models import Aoi, AreaUnit, Parcel

BATCH = 5_000
#: What a reload by register id updates.
UPDATED = ("declared_crop", "geom")


class ParcelLoadError(ValueError):
    """Parcels that cannot be loaded (unknown AOI, not polygons)."""


@dataclass(frozen=True)
class ParcelRecord:
    external_id: str
    geometry: BaseGeometry  # EPSG:4326
    declared_crop: str | None = None


def load_parcels(engine: Engine, aoi_name: str, records: Iterable[ParcelRecord]) -> int:
    """Insert or update (by external id) the parcels of an AOI; returns how many."""
    with engine.begin() as conn:
        aoi_id = conn.execute(select(Aoi.id).where(Aoi.name == aoi_name)).scalar()
        if aoi_id is None:
            raise ParcelLoadError(f"no AOI named {aoi_name!r}: add it first (revisit aoi add)")
        rows, total = [], 0
        for record in records:
            if record.geometry.geom_type not in ("Polygon", "MultiPolygon"):
                raise ParcelLoadError(
                    f"parcel {record.external_id!r} is a {record.geometry.geom_type}, not a polygon"
                )
            rows.append(
                {
                    "aoi_id": aoi_id,
                    "external_id": record.external_id,
                    "declared_crop": record.declared_crop,
                    "geom": ewkt(record.geometry),
                }
            )
            if len(rows) == BATCH:
                total += upsert(conn, Parcel, "parcel_external_id", rows, UPDATED)
                rows = []
        if rows:
            total += upsert(conn, Parcel, "parcel_external_id", rows, UPDATED)
    return total


def ewkt(geometry: BaseGeometry) -> str:
    """EPSG:4326 EWKT at full precision (a geometry column's bind turns it into one)."""
    return "SRID=4326;" + str(shapely.to_wkt(geometry, rounding_precision=-1, trim=True))


def upsert(
    conn: Connection,
    table: type[Parcel | AreaUnit],
    key: str,
    rows: list[dict[str, object]],
    updated: Sequence[str],
) -> int:
    """Insert `rows`, or update their `updated` columns where the `key` constraint
    already holds a row."""
    stmt = insert(table)
    conn.execute(
        stmt.on_conflict_do_update(
            constraint=key, set_={name: stmt.excluded[name] for name in updated}
        ),
        rows,
    )
    return len(rows)


def with_geometries(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, BaseGeometry]]:
    """(first column, geometry) of rows whose second column is WKB."""
    geoms = shapely.from_wkb([bytes(row[1]) for row in rows]) if rows else []
    return [(row[0], geom) for row, geom in zip(rows, geoms, strict=True)]


def parcels_in(
    engine: Engine, aoi_name: str, footprint_wkt: str = ""
) -> list[tuple[int, BaseGeometry]]:
    """(id, geometry in EPSG:4326) of the AOI's parcels that touch the footprint (all of
    them without a footprint), in id order."""
    query = (
        select(Parcel.id, func.ST_AsBinary(Parcel.geom))
        .join(Aoi, Aoi.id == Parcel.aoi_id)
        .where(Aoi.name == aoi_name)
        .order_by(Parcel.id)
    )
    if footprint_wkt:
        query = query.where(
            func.ST_Intersects(Parcel.geom, func.ST_GeomFromText(footprint_wkt, 4326))
        )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [(int(pid), geom) for pid, geom in with_geometries(rows)]
