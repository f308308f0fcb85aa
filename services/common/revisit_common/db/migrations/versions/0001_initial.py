"""First tables: aoi, scene, scene_processing, lcz_cell.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "aoi",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("geom", Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False),
        sa.CheckConstraint("kind IN ('city', 'parcels', 'region')", name="aoi_kind_known"),
    )
    op.create_index("aoi_geom", "aoi", ["geom"], postgresql_using="gist")
    op.create_table(
        "scene",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("tile_id", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cloud_cover", sa.Float),
        sa.Column("processing_baseline", sa.Text),
        sa.Column("footprint", Geometry("GEOMETRY", srid=4326, spatial_index=False)),
    )
    op.create_index("scene_footprint", "scene", ["footprint"], postgresql_using="gist")
    op.create_table(
        "scene_processing",
        sa.Column("scene_id", sa.Text, sa.ForeignKey("scene.id"), primary_key=True),
        sa.Column("aoi_id", sa.Integer, sa.ForeignKey("aoi.id"), primary_key=True),
        sa.Column("indicator", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("results", sa.Integer),
        sa.CheckConstraint(
            "status IN ('discovered', 'stored', 'no_valid_observation')",
            name="scene_processing_status_known",
        ),
    )
    op.create_table(
        "lcz_cell",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("aoi_id", sa.Integer, sa.ForeignKey("aoi.id"), nullable=False),
        sa.Column("cell_id", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scene_id", sa.Text, sa.ForeignKey("scene.id"), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("lcz_class", sa.SmallInteger, nullable=False),
        sa.Column("confidence", sa.REAL, nullable=False),
        sa.Column("probabilities", sa.ARRAY(sa.REAL), nullable=False),
        sa.Column("geom", Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.UniqueConstraint(
            "aoi_id", "cell_id", "acquired_at", "model_name", "model_version", name="lcz_cell_key"
        ),
        sa.CheckConstraint("lcz_class BETWEEN 1 AND 17", name="lcz_class_known"),
    )
    op.create_index("lcz_cell_acquired_at", "lcz_cell", ["acquired_at"])
    op.create_index("lcz_cell_geom", "lcz_cell", ["geom"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_table("lcz_cell")
    op.drop_table("scene_processing")
    op.drop_table("scene")
    op.drop_table("aoi")
