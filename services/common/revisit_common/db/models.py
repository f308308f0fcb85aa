"""Tables of the system of record. Geometries are stored in EPSG:4326 (WGS 84).

- ``aoi``: areas of interest that the catalog watches, with what it searches for them.
- ``scene``: one row per discovered STAC item; the versions of one acquisition share
  its ``acquisition_key``, and an older version names the one that superseded it.
- ``catalog_cursor``: how far the catalog has searched, per AOI, source, collection, mode.
- ``scene_processing``: the processing status of a scene for one AOI and indicator,
  from discovery to storage, with its timings.
- ``parcel``: agricultural parcels of a ``parcels`` AOI (geometry, register id, declared crop).
- ``lcz_cell``: Local Climate Zone of a grid cell of a city AOI, per acquisition and model;
  ``lcz_latest`` (view): each cell's latest.
- ``parcel_prediction``: crop type of a parcel per season, pass and model (the history);
  ``parcel_latest`` (view): each parcel's latest prediction of each season.
- ``parcel_biophys``: LAI, CCC and FCOVER of a parcel per pass; ``parcel_biophys_latest``
  (view): each parcel's latest pass of each season, with its geometry.
- ``area_unit``: units (districts, admin units) of a region AOI; ``landcover_indicator``
  rows whose ``area_key`` is a unit's key aggregate that unit.
- ``landcover_indicator``: land-cover fractions and biophysical means of an area (the
  whole AOI, or one of its units) per pass; ``area_unit_indicator`` (view) adds the unit's
  name and geometry.
- ``model_class``: the classes of each crop model version, filled by the store.
- ``crop_class_map``: the crop model's class of a declared crop code; it feeds
  ``parcel_control`` (view) and ``parcel_control_at(min_confidence)`` (function), which
  flag parcels whose predicted crop disagrees with the declared one.
- ``lcz_share`` (view): the share of each Local Climate Zone in a city AOI.
"""

from __future__ import annotations

from datetime import date, datetime

from geoalchemy2 import Geometry
from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
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
    #: when preprocess and inference produced the events that led to this row
    preprocessed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    inferred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
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


class AreaUnit(Base):
    """A unit (district, admin unit) of a region AOI that its land-cover and biophysical
    indicators are also aggregated over: `landcover_indicator.area_key` is its key."""

    __tablename__ = "area_unit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    aoi_id: Mapped[int] = mapped_column(ForeignKey("aoi.id", ondelete="CASCADE"))
    unit_key: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    geom = mapped_column(Geometry("GEOMETRY", srid=SRID, spatial_index=False), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("aoi_id", "unit_key", name="area_unit_key"),
        CheckConstraint(
            "ST_GeometryType(geom) IN ('ST_Polygon', 'ST_MultiPolygon')",
            name="area_unit_is_areal",
        ),
        Index("area_unit_geom", "geom", postgresql_using="gist"),
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


class ParcelPrediction(Base):
    """Crop type of a parcel as of one pass, from its season so far (the history)."""

    __tablename__ = "parcel_prediction"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parcel_id: Mapped[int] = mapped_column(ForeignKey("parcel.id", ondelete="CASCADE"))
    season: Mapped[date] = mapped_column(Date)  # the season's first day
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # as of this pass
    scene_id: Mapped[str] = mapped_column(ForeignKey("scene.id"))
    model_name: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    class_code: Mapped[int] = mapped_column(SmallInteger)
    class_name: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(REAL)
    probabilities: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    observations: Mapped[int] = mapped_column(SmallInteger)  # valid passes used
    season_days: Mapped[int] = mapped_column(SmallInteger)  # season start -> last pass used

    __table_args__ = (
        UniqueConstraint(
            "parcel_id",
            "season",
            "acquired_at",
            "model_name",
            "model_version",
            name="parcel_prediction_key",
        ),
        Index("parcel_prediction_acquired_at", "acquired_at"),
    )


class ParcelBiophys(Base):
    """LAI, CCC and FCOVER of a parcel from one pass: the mean and median over its
    sampled valid pixels (`pixels`: how many valid pixels it had)."""

    __tablename__ = "parcel_biophys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parcel_id: Mapped[int] = mapped_column(ForeignKey("parcel.id", ondelete="CASCADE"))
    season: Mapped[date] = mapped_column(Date)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    scene_id: Mapped[str] = mapped_column(ForeignKey("scene.id"))
    model_name: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    lai_mean: Mapped[float] = mapped_column(REAL)
    lai_median: Mapped[float] = mapped_column(REAL)
    ccc_mean: Mapped[float] = mapped_column(REAL)
    ccc_median: Mapped[float] = mapped_column(REAL)
    fcover_mean: Mapped[float] = mapped_column(REAL)
    fcover_median: Mapped[float] = mapped_column(REAL)
    pixels: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (
        UniqueConstraint(
            "parcel_id", "acquired_at", "model_name", "model_version", name="parcel_biophys_key"
        ),
        Index("parcel_biophys_acquired_at", "acquired_at"),
    )


class LandcoverIndicator(Base):
    """Land-cover fractions and biophysical summaries of an area, per pass. The two come
    from two models (two prediction batches) and fill their own columns of one row."""

    __tablename__ = "landcover_indicator"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    aoi_id: Mapped[int] = mapped_column(ForeignKey("aoi.id", ondelete="CASCADE"))
    area_key: Mapped[str] = mapped_column(Text)  # the AOI's name for the whole AOI
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    scene_id: Mapped[str] = mapped_column(ForeignKey("scene.id"))
    tree_fraction: Mapped[float | None] = mapped_column(REAL)
    built_up_fraction: Mapped[float | None] = mapped_column(REAL)
    water_fraction: Mapped[float | None] = mapped_column(REAL)  # NULL: not in the legend
    cropland_fraction: Mapped[float | None] = mapped_column(REAL)
    classified_share: Mapped[float | None] = mapped_column(REAL)  # pixels with a year of passes
    landcover_model: Mapped[str | None] = mapped_column(Text)
    landcover_model_version: Mapped[str | None] = mapped_column(Text)
    lai_mean: Mapped[float | None] = mapped_column(REAL)
    lai_median: Mapped[float | None] = mapped_column(REAL)
    ccc_mean: Mapped[float | None] = mapped_column(REAL)  # canopy chlorophyll, g/m²
    ccc_median: Mapped[float | None] = mapped_column(REAL)
    fcover_mean: Mapped[float | None] = mapped_column(REAL)
    fcover_median: Mapped[float | None] = mapped_column(REAL)
    valid_pixel_share: Mapped[float | None] = mapped_column(REAL)
    biophys_model: Mapped[str | None] = mapped_column(Text)
    biophys_model_version: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("aoi_id", "area_key", "acquired_at", name="landcover_indicator_key"),
        Index("landcover_indicator_acquired_at", "acquired_at"),
    )


class CropClassMap(Base):
    """The class of the crop model that a declared crop code stands for."""

    __tablename__ = "crop_class_map"

    declared_crop: Mapped[str] = mapped_column(Text, primary_key=True)
    class_name: Mapped[str] = mapped_column(Text)


class ModelClass(Base):
    """A class of a crop model version, as named in its prediction batches."""

    __tablename__ = "model_class"

    model_name: Mapped[str] = mapped_column(Text, primary_key=True)
    model_version: Mapped[str] = mapped_column(Text, primary_key=True)
    class_code: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    class_name: Mapped[str] = mapped_column(Text)
