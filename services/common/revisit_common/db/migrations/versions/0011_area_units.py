"""Area units: ``area_unit`` holds the units (districts, admin units) of a region AOI that
its land-cover fractions and biophysical means are also aggregated over, per pass.
``landcover_indicator.area_key`` is the AOI's name for the whole AOI and a unit's key for
that unit; the view ``area_unit_indicator`` joins each unit's rows to its name and
geometry (for SQL, QGIS and the features endpoint).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0011"
down_revision = "0010"

VIEW = """
CREATE VIEW area_unit_indicator AS
SELECT l.id, a.name AS aoi, u.unit_key, u.name AS unit_name, l.acquired_at, l.scene_id,
       l.tree_fraction, l.built_up_fraction, l.water_fraction, l.cropland_fraction,
       l.classified_share, l.lai_mean, l.lai_median, l.ccc_mean, l.ccc_median,
       l.fcover_mean, l.fcover_median, l.valid_pixel_share,
       l.landcover_model, l.landcover_model_version, l.biophys_model, l.biophys_model_version,
       u.geom
FROM landcover_indicator l
JOIN area_unit u ON u.aoi_id = l.aoi_id AND u.unit_key = l.area_key
JOIN aoi a ON a.id = l.aoi_id
"""


def upgrade() -> None:
    op.create_table(
        "area_unit",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "aoi_id", sa.Integer, sa.ForeignKey("aoi.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("unit_key", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("geom", Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("aoi_id", "unit_key", name="area_unit_key"),
        sa.CheckConstraint(
            "ST_GeometryType(geom) IN ('ST_Polygon', 'ST_MultiPolygon')",
            name="area_unit_is_areal",
        ),
    )
    op.create_index("area_unit_geom", "area_unit", ["geom"], postgresql_using="gist")
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW area_unit_indicator")
    op.drop_table("area_unit")
