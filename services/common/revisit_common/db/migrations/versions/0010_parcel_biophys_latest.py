"""Biophysics of parcels on maps: ``parcel_biophys_latest``, each parcel's latest LAI, CCC
and FCOVER of each season (its latest pass; of two model versions of one pass, the
later), with its register id, declared crop and geometry, and a stable row id,
``biophys_id`` (map clients such as QGIS, through `revisit features`, tell features apart
by it); and ``parcel_biophys_season_order``, an index in the view's order (as
``parcel_prediction_latest``, 0007, is for ``parcel_latest``): one parcel's rows of a
season, and each parcel's latest row, are read in index order instead of sorting the
whole history.

The read-only role reads the view through the default privileges of 0005. Going down
drops the view and the index; ``parcel_biophys`` keeps its rows.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"

PARCEL_BIOPHYS_LATEST = """
CREATE VIEW parcel_biophys_latest AS
SELECT DISTINCT ON (b.parcel_id, b.season)
    b.parcel_id, p.aoi_id, p.external_id, p.declared_crop, b.season, b.acquired_at,
    b.lai_mean, b.lai_median, b.ccc_mean, b.ccc_median, b.fcover_mean, b.fcover_median,
    b.pixels, b.model_name, b.model_version, b.scene_id, p.geom, b.id AS biophys_id
FROM parcel_biophys b
JOIN parcel p ON p.id = b.parcel_id
ORDER BY b.parcel_id, b.season, b.acquired_at DESC, b.model_name, b.model_version DESC
"""


def upgrade() -> None:
    op.execute(
        "CREATE INDEX parcel_biophys_season_order ON parcel_biophys "
        "(parcel_id, season, acquired_at DESC, model_name, model_version DESC)"
    )
    op.execute(PARCEL_BIOPHYS_LATEST)


def downgrade() -> None:
    op.execute("DROP VIEW parcel_biophys_latest")
    op.execute("DROP INDEX parcel_biophys_season_order")
