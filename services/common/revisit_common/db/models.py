"""Tables of the system of record. Geometries are stored in EPSG:4326 (WGS 84).

- ``aoi``: areas of interest that the catalog watches, with what it searches for them.
- ``scene``: one row per discovered STAC item; the versions of one acquisition share
  its ``acquisition_key``, and an older version names the one that superseded it.
- ``catalog_cursor``: how far the catalog has searched, per AOI, source, collection, mode.
- ``scene_processing``: the processing status of a scene for one AOI and indicator,
  from discovery to storage, with its timings.
- ``parcel``: agricultural parcels of a ``parcels`` AOI (geometry, register id, declared crop).
- ``lcz_cell``: Local Climate Zone of a grid cell of a city AOI, per acquisition and model.
"""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID = 4326
AOI_KINDS = ("city", "parcels", "region")
SCENE_STATUSES = ("discovered", "stored", "no_valid_observation")


class Base(DeclarativeBase):
    pass


class Aoi(Base):
    __tablename__ = "aoi"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    geom = mapped_column(Geometry("GEOMETRY", srid=SRID, spatial_index=False), nullable=False)
    collections: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("ARRAY['sentinel-2-l2a']")
    )
    max_cloud_cover: Mapped[float | None] = mapped_column(REAL)
    season_start: Mapped[str | None] = mapped_column(String(5))  # "MM-DD", every year
    season_end: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"kind IN {AOI_KINDS}", name="aoi_kind_known"),
        Index("aoi_geom", "geom", postgresql_using="gist"),
    )


class Scene(Base):
    __tablename__ = "scene"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # STAC item id
    collection: Mapped[str] = mapped_column(Text)
    tile_id: Mapped[str] = mapped_column(Text)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cloud_cover: Mapped[float | None] = mapped_column(Float)
    processing_baseline: Mapped[str | None] = mapped_column(Text)
    footprint = mapped_column(Geometry("GEOMETRY", srid=SRID, spatial_index=False))
    acquisition_key: Mapped[str | None] = mapped_column(Text)
    sensor: Mapped[str | None] = mapped_column(Text)
    platform: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reprocessed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    superseded_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("scene_footprint", "footprint", postgresql_using="gist"),
        Index("scene_acquisition_key", "acquisition_key"),
    )


class SceneProcessing(Base):
    __tablename__ = "scene_processing"

    scene_id: Mapped[str] = mapped_column(ForeignKey("scene.id"), primary_key=True)
    aoi_id: Mapped[int] = mapped_column(ForeignKey("aoi.id"), primary_key=True)
    indicator: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(40))
    discovered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    results: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint(f"status IN {SCENE_STATUSES}", name="scene_processing_status_known"),
    )


class CatalogCursor(Base):
    __tablename__ = "catalog_cursor"

    aoi_id: Mapped[int] = mapped_column(ForeignKey("aoi.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    collection: Mapped[str] = mapped_column(Text, primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)  # "poll" or "backfill"
    position: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # searched up to here
    range_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # backfill
    range_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("mode IN ('poll', 'backfill')", name="catalog_cursor_mode_known"),
    )


class Parcel(Base):
    __tablename__ = "parcel"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    aoi_id: Mapped[int] = mapped_column(ForeignKey("aoi.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(Text)
    declared_crop: Mapped[str | None] = mapped_column(Text)
    geom = mapped_column(Geometry("GEOMETRY", srid=SRID, spatial_index=False), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("aoi_id", "external_id", name="parcel_external_id"),
        CheckConstraint(
            "ST_GeometryType(geom) IN ('ST_Polygon', 'ST_MultiPolygon')", name="parcel_is_areal"
        ),
        Index("parcel_geom", "geom", postgresql_using="gist"),
    )


class LczCell(Base):
    __tablename__ = "lcz_cell"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aoi_id: Mapped[int] = mapped_column(ForeignKey("aoi.id"))
    cell_id: Mapped[str] = mapped_column(Text)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    scene_id: Mapped[str] = mapped_column(ForeignKey("scene.id"))
    model_name: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    lcz_class: Mapped[int] = mapped_column(SmallInteger)
    confidence: Mapped[float] = mapped_column(REAL)
    probabilities: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    geom = mapped_column(Geometry("POLYGON", srid=SRID, spatial_index=False), nullable=False)

    __table_args__ = (
        UniqueConstraint(
            "aoi_id", "cell_id", "acquired_at", "model_name", "model_version", name="lcz_cell_key"
        ),
        CheckConstraint("lcz_class BETWEEN 1 AND 17", name="lcz_class_known"),
        Index("lcz_cell_acquired_at", "acquired_at"),
        Index("lcz_cell_geom", "geom", postgresql_using="gist"),
    )
