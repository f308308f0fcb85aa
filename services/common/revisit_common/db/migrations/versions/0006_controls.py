"""What users ask of the indicators: CAP-control flags of parcels, LCZ class shares.

``model_class``: the classes of each crop model version, as the store sees them in its
prediction batches. ``crop_class_map``: which class of the crop model a declared crop (the
code or name of a parcel register, e.g. an LPIS export) stands for. A declared crop
missing from the map is taken as a class name when the model has that class (case and
surrounding blanks ignored).

``parcel_control_at(min_confidence)``: each parcel's latest prediction of each season
next to its declared crop; ``flagged`` is true where the model predicts another class
than the declared one with at least ``min_confidence``. ``parcel_control``: the same at
the default threshold, 0.8. Parcels without a declared crop, or whose declared crop maps
to no class of the model, are listed with ``flagged`` false and ``expected_class`` NULL.

``lcz_share``: per city AOI, the share of its cells in each Local Climate Zone, from each
cell's latest class.

Going down drops the two small tables above (the store fills ``model_class`` again from
the next batches; ``crop_class_map`` must be loaded again); every indicator table keeps
its rows.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

DEFAULT_MIN_CONFIDENCE = 0.8

PARCEL_CONTROL_AT = """
CREATE FUNCTION parcel_control_at(min_confidence real)
RETURNS TABLE (
    parcel_id bigint, aoi_id bigint, external_id text, declared_crop text,
    expected_class text, season date, acquired_at timestamptz, class_name text,
    confidence real, observations integer, model_name text, model_version text,
    flagged boolean, geom geometry
)
LANGUAGE sql STABLE AS $$
    SELECT l.parcel_id, l.aoi_id, l.external_id, l.declared_crop, e.expected_class,
           l.season, l.acquired_at, l.class_name, l.confidence, l.observations,
           l.model_name, l.model_version,
           COALESCE(e.expected_class <> l.class_name AND l.confidence >= min_confidence,
                    false),
           l.geom
    FROM parcel_latest l
    LEFT JOIN LATERAL (
        SELECT CASE
            WHEN l.declared_crop IS NULL OR btrim(l.declared_crop) = '' THEN NULL
            ELSE COALESCE(
                (SELECT m.class_name FROM crop_class_map m
                 WHERE m.declared_crop = btrim(l.declared_crop)),
                (SELECT c.class_name FROM model_class c
                 WHERE c.model_name = l.model_name AND c.model_version = l.model_version
                   AND c.class_name = lower(btrim(l.declared_crop))))
        END AS expected_class
    ) e ON true
$$
"""

PARCEL_CONTROL = (
    f"CREATE VIEW parcel_control AS SELECT * FROM parcel_control_at({DEFAULT_MIN_CONFIDENCE}::real)"
)

LCZ_SHARE = """
CREATE VIEW lcz_share AS
SELECT c.aoi_id, a.name AS aoi_name, c.lcz_class, count(*) AS cells,
       (count(*)::double precision / sum(count(*)) OVER (PARTITION BY c.aoi_id))::real
           AS share,
       max(c.acquired_at) AS latest_pass
FROM lcz_latest c
JOIN aoi a ON a.id = c.aoi_id
GROUP BY c.aoi_id, a.name, c.lcz_class
"""


def upgrade() -> None:
    op.create_table(
        "model_class",
        sa.Column("model_name", sa.Text, primary_key=True),
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("class_code", sa.SmallInteger, primary_key=True),
        sa.Column("class_name", sa.Text, nullable=False),
    )
    op.create_table(
        "crop_class_map",
        sa.Column("declared_crop", sa.Text, primary_key=True),
        sa.Column("class_name", sa.Text, nullable=False),
    )
    op.execute(PARCEL_CONTROL_AT)
    op.execute(PARCEL_CONTROL)
    op.execute(LCZ_SHARE)


def downgrade() -> None:
    op.execute("DROP VIEW lcz_share")
    op.execute("DROP VIEW parcel_control")
    op.execute("DROP FUNCTION parcel_control_at(real)")
    op.drop_table("crop_class_map")
    op.drop_table("model_class")
