"""Crop type of parcels, land-cover and biophysical indicators of areas, latest views.

``parcel_prediction``: the history of crop-type predictions of a parcel, one per season,
pass (``acquired_at``: as of that pass) and model; each says how many valid passes it
used and how far into the season they reach. ``parcel_latest``: each parcel's latest
prediction of each season, with its register id, declared crop and geometry.

``landcover_indicator``: per AOI area and pass, the land-cover fractions (land-cover
model) and the mean / median LAI, CCC and FCOVER (biophysical model); each model fills
its own columns of the row and names itself there.

``lcz_latest``: each LCZ cell's latest class.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

PARCEL_LATEST = """
CREATE VIEW parcel_latest AS
SELECT DISTINCT ON (pp.parcel_id, pp.season)
    pp.parcel_id, p.aoi_id, p.external_id, p.declared_crop, pp.season, pp.acquired_at,
    pp.class_code, pp.class_name, pp.confidence, pp.observations, pp.season_days,
    pp.model_name, pp.model_version, pp.scene_id, p.geom
FROM parcel_prediction pp
JOIN parcel p ON p.id = pp.parcel_id
ORDER BY pp.parcel_id, pp.season, pp.acquired_at DESC, pp.model_name, pp.model_version DESC
"""

LCZ_LATEST = """
CREATE VIEW lcz_latest AS
SELECT DISTINCT ON (aoi_id, cell_id)
    id, aoi_id, cell_id, acquired_at, scene_id, model_name, model_version, lcz_class,
    confidence, geom
FROM lcz_cell
ORDER BY aoi_id, cell_id, acquired_at DESC, model_name, model_version DESC
"""


def upgrade() -> None:
    op.create_table(
        "parcel_prediction",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "parcel_id",
            sa.BigInteger,
            sa.ForeignKey("parcel.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("season", sa.Date, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scene_id", sa.Text, sa.ForeignKey("scene.id"), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("class_code", sa.SmallInteger, nullable=False),
        sa.Column("class_name", sa.Text, nullable=False),
        sa.Column("confidence", sa.REAL, nullable=False),
        sa.Column("probabilities", sa.ARRAY(sa.REAL), nullable=False),
        sa.Column("observations", sa.SmallInteger, nullable=False),
        sa.Column("season_days", sa.SmallInteger, nullable=False),
        sa.UniqueConstraint(
            "parcel_id",
            "season",
            "acquired_at",
            "model_name",
            "model_version",
            name="parcel_prediction_key",
        ),
    )
    op.create_index("parcel_prediction_acquired_at", "parcel_prediction", ["acquired_at"])
    fraction = [
        sa.Column(f"{name}_fraction", sa.REAL) for name in ("tree", "built_up", "water", "cropland")
    ]
    biophysical = [
        sa.Column(f"{v}_{stat}", sa.REAL)
        for v in ("lai", "ccc", "fcover")
        for stat in ("mean", "median")
    ]
    op.create_table(
        "landcover_indicator",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "aoi_id", sa.Integer, sa.ForeignKey("aoi.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("area_key", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scene_id", sa.Text, sa.ForeignKey("scene.id"), nullable=False),
        *fraction,
        sa.Column("classified_share", sa.REAL),
        sa.Column("landcover_model", sa.Text),
        sa.Column("landcover_model_version", sa.Text),
        *biophysical,
        sa.Column("valid_pixel_share", sa.REAL),
        sa.Column("biophys_model", sa.Text),
        sa.Column("biophys_model_version", sa.Text),
        sa.UniqueConstraint("aoi_id", "area_key", "acquired_at", name="landcover_indicator_key"),
    )
    op.create_index("landcover_indicator_acquired_at", "landcover_indicator", ["acquired_at"])
    op.execute(PARCEL_LATEST)
    op.execute(LCZ_LATEST)


def downgrade() -> None:
    op.execute("DROP VIEW lcz_latest")
    op.execute("DROP VIEW parcel_latest")
    op.drop_table("landcover_indicator")
    op.drop_table("parcel_prediction")
