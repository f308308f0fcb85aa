"""Area units of a region AOI in PostGIS: loaded by key, read back for rasterising."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import shapely
import shapely.prepared
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, delete, func, select

from revisit_common.db.models import Aoi, AreaUnit
from revisit_common.db.parcels import ewkt, upsert, with_geometries

#: Units per AOI at most: preprocess numbers them in a uint16 raster (0: no unit).
MAX_UNITS = 65_535


class UnitLoadError(ValueError):
    """Units that cannot be loaded (unknown AOI, not a region, a key taken by the AOI)."""


@dataclass(frozen=True)
class UnitRecord:
    key: str
    geometry: BaseGeometry  # EPSG:4326, polygonal
    name: str | None = None


@dataclass
class UnitLoad:
    """What a load did: units written, and those left out or only partly in the AOI."""

    loaded: int = 0
    outside: list[str] = field(default_factory=list)  # not loaded: no area in the AOI
    partly: dict[str, float] = field(default_factory=dict)  # key -> share inside the AOI


def load_units(
    engine: Engine, aoi_name: str, records: Iterable[UnitRecord], replace: bool = False
) -> UnitLoad:
    """Insert or update (by key) the area units of a region AOI, in one transaction;
    `replace` first removes the AOI's units that are not in `records`. A unit without
    area inside the AOI is left out (nothing would ever be aggregated over it)."""
    result = UnitLoad()
    with engine.begin() as conn:
        aoi = conn.execute(
            select(Aoi.id, Aoi.kind, func.ST_AsBinary(Aoi.geom)).where(Aoi.name == aoi_name)
        ).first()
        if aoi is None:
            raise UnitLoadError(f"no AOI named {aoi_name!r}: add it first (revisit aoi add)")
        if aoi.kind != "region":
            raise UnitLoadError(
                f"AOI {aoi_name!r} is a {aoi.kind} AOI: area units aggregate the land-cover "
                "and biophysical indicators, which only region AOIs get"
            )
        area = shapely.prepared.prep(shapely.from_wkb(bytes(aoi[2])))
        rows = []
        for record in records:
            if record.key == aoi_name:
                raise UnitLoadError(
                    f"unit key {record.key!r} is the AOI's name, which stands for the whole AOI"
                )
            if record.geometry.geom_type not in ("Polygon", "MultiPolygon"):
                raise UnitLoadError(f"unit {record.key!r} is a {record.geometry.geom_type}")
            if not area.intersects(record.geometry):
                result.outside.append(record.key)
                continue
            if not area.contains(record.geometry):
                inside = area.context.intersection(record.geometry).area / record.geometry.area
                if inside == 0:
                    result.outside.append(record.key)
                    continue
                result.partly[record.key] = inside
            rows.append(
                {
                    "aoi_id": aoi.id,
                    "unit_key": record.key,
                    "name": record.name,
                    "geom": ewkt(record.geometry),
                }
            )
        if replace:
            keys = [r["unit_key"] for r in rows]
            conn.execute(
                delete(AreaUnit).where(AreaUnit.aoi_id == aoi.id, AreaUnit.unit_key.not_in(keys))
            )
        if rows:
            upsert(conn, AreaUnit, "area_unit_key", rows, ("name", "geom"))
        total = conn.execute(
            select(func.count()).select_from(AreaUnit).where(AreaUnit.aoi_id == aoi.id)
        ).scalar_one()
        if total > MAX_UNITS:  # raising rolls the load back
            raise UnitLoadError(
                f"AOI {aoi_name!r} would have {total} units, at most {MAX_UNITS}: split the AOI"
            )
    result.loaded = len(rows)
    return result


def units_of(engine: Engine, aoi_name: str) -> list[tuple[str, BaseGeometry]]:
    """(key, geometry in EPSG:4326) of the AOI's units, in key order."""
    query = (
        select(AreaUnit.unit_key, func.ST_AsBinary(AreaUnit.geom))
        .join(Aoi, Aoi.id == AreaUnit.aoi_id)
        .where(Aoi.name == aoi_name)
        .order_by(AreaUnit.unit_key)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [(str(key), geom) for key, geom in with_geometries(rows)]
