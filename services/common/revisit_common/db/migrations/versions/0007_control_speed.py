"""Faster CAP controls: an index in ``parcel_latest``'s order, joins instead of two
lookups per parcel, and ``parcel_control_since(since, min_confidence)``; a stable row id,
``prediction_id``, in ``parcel_latest`` and the controls (map clients such as QGIS, through
`revisit features`, tell features apart by it).

On 100,000 parcels with 5 passes of history (`make bench`, docs/queries.md), "parcels
flagged this week" through ``parcel_control`` took 2.7 s: ``parcel_latest`` sorted the
whole history and ``parcel_control_at`` looked the declared crop up twice per parcel.
``parcel_control_since`` reads only the predictions made from passes since ``since``
(the ``acquired_at`` index): a parcel whose latest prediction is that recent has it
among them, so the answer is the same as ``parcel_control`` filtered on
``acquired_at >= since``.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0007"
down_revision = "0006"

COLUMNS = """
    parcel_id bigint, aoi_id bigint, external_id text, declared_crop text,
    expected_class text, season date, acquired_at timestamptz, class_name text,
    confidence real, observations integer, model_name text, model_version text,
    flagged boolean, geom geometry, prediction_id bigint
"""


def control(source: str) -> str:
    """The control's SELECT over `source`: rows shaped like `parcel_latest`, as `l`."""
    return f"""
    SELECT l.parcel_id, l.aoi_id, l.external_id, l.declared_crop, e.expected_class,
           l.season, l.acquired_at, l.class_name, l.confidence, l.observations,
           l.model_name, l.model_version,
           COALESCE(e.expected_class <> l.class_name AND l.confidence >= min_confidence,
                    false),
           l.geom, l.prediction_id
    FROM {source} l
    LEFT JOIN crop_class_map m ON m.declared_crop = btrim(l.declared_crop)
    LEFT JOIN model_class c ON c.model_name = l.model_name
        AND c.model_version = l.model_version
        AND c.class_name = lower(btrim(l.declared_crop))
    CROSS JOIN LATERAL (
        SELECT CASE WHEN btrim(COALESCE(l.declared_crop, '')) = '' THEN NULL
                    ELSE COALESCE(m.class_name, c.class_name) END AS expected_class
    ) e
    """


SINCE = """(
    SELECT DISTINCT ON (pp.parcel_id, pp.season)
        pp.parcel_id, p.aoi_id, p.external_id, p.declared_crop, pp.season, pp.acquired_at,
        pp.class_name, pp.confidence, pp.observations, pp.model_name, pp.model_version,
        p.geom, pp.id AS prediction_id
    FROM parcel_prediction pp
    JOIN parcel p ON p.id = pp.parcel_id
    WHERE pp.acquired_at >= since
    ORDER BY pp.parcel_id, pp.season, pp.acquired_at DESC, pp.model_name,
             pp.model_version DESC
)"""


def _previous(revision: str) -> ModuleType:
    """A migration module of this folder (their names start with a digit)."""
    path = next(Path(__file__).parent.glob(f"{revision}_*.py"))
    spec = importlib.util.spec_from_file_location(f"revisit_migration_{revision}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(
        "CREATE INDEX parcel_prediction_latest ON parcel_prediction "
        "(parcel_id, season, acquired_at DESC, model_name, model_version DESC)"
    )
    latest = _previous("0004").PARCEL_LATEST
    op.execute(
        latest.replace("CREATE VIEW", "CREATE OR REPLACE VIEW").replace(
            "p.geom\nFROM", "p.geom, pp.id AS prediction_id\nFROM"
        )
    )
    op.execute("DROP VIEW parcel_control")
    op.execute("DROP FUNCTION parcel_control_at(real)")
    op.execute(
        f"CREATE FUNCTION parcel_control_at(min_confidence real) "
        f"RETURNS TABLE ({COLUMNS}) LANGUAGE sql STABLE AS $$ {control('parcel_latest')} $$"
    )
    op.execute(_previous("0006").PARCEL_CONTROL)
    op.execute(
        f"CREATE FUNCTION parcel_control_since(since timestamptz, min_confidence real "
        f"DEFAULT 0.8) RETURNS TABLE ({COLUMNS}) LANGUAGE sql STABLE AS "
        f"$$ {control(SINCE)} $$"
    )


def downgrade() -> None:
    before = _previous("0006")
    op.execute("DROP FUNCTION parcel_control_since(timestamptz, real)")
    op.execute("DROP VIEW parcel_control")
    op.execute("DROP FUNCTION parcel_control_at(real)")
    op.execute("DROP VIEW parcel_latest")
    op.execute(_previous("0004").PARCEL_LATEST)
    op.execute(before.PARCEL_CONTROL_AT)
    op.execute(before.PARCEL_CONTROL)
    op.execute("DROP INDEX parcel_prediction_latest")
