"""Parcels of `parcels` AOIs, which the preprocess service reads pixel sets for.

``parcel``: one row per agricultural parcel of an AOI, its geometry in EPSG:4326, the
identifier it has in the source register (LPIS, cadastre...) and the declared crop when
the register has one. (``external_id`` is unique within an AOI.)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "parcel",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "aoi_id", sa.Integer, sa.ForeignKey("aoi.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("declared_crop", sa.Text),
        sa.Column("geom", Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("aoi_id", "external_id", name="parcel_external_id"),
        sa.CheckConstraint(
            "ST_GeometryType(geom) IN ('ST_Polygon', 'ST_MultiPolygon')", name="parcel_is_areal"
        ),
    )
    op.create_index("parcel_geom", "parcel", ["geom"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_index("parcel_geom", table_name="parcel")
    op.drop_table("parcel")
