"""Catalog ingestion: AOI subscriptions, scene versions, polling cursors.

- ``aoi`` gains what the catalog searches for: collections, maximum cloud cover and an
  optional yearly season window ("MM-DD" bounds).
- ``scene`` gains the acquisition key shared by every copy and version of one
  acquisition, the version's production time, its source and what superseded it.
- ``catalog_cursor``: how far the catalog has searched, per AOI, source, collection and
  mode (``poll`` or ``backfill``), so that a restart resumes where it stopped.

Scenes recorded before this revision have no acquisition key: the catalog fills it in
when it sees their items again (at worst publishing them once more, which the stages
downstream absorb: their rows are keyed by acquisition time).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"

SEASON_DAY = "^[01][0-9]-[0-3][0-9]$"


def upgrade() -> None:
    op.add_column(
        "aoi",
        sa.Column(
            "collections",
            postgresql.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("ARRAY['sentinel-2-l2a']"),
        ),
    )
    op.add_column("aoi", sa.Column("max_cloud_cover", sa.REAL))
    op.add_column("aoi", sa.Column("season_start", sa.String(5)))
    op.add_column("aoi", sa.Column("season_end", sa.String(5)))
    op.add_column(
        "aoi",
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_check_constraint(
        "aoi_season_days",
        "aoi",
        f"(season_start IS NULL AND season_end IS NULL) OR "
        f"(season_start ~ '{SEASON_DAY}' AND season_end ~ '{SEASON_DAY}')",
    )
    op.create_check_constraint(
        "aoi_max_cloud_cover_percent", "aoi", "max_cloud_cover BETWEEN 0 AND 100"
    )
    for name, kind in (
        ("acquisition_key", sa.Text),
        ("sensor", sa.Text),
        ("platform", sa.Text),
        ("source", sa.Text),
        ("superseded_by", sa.Text),
    ):
        op.add_column("scene", sa.Column(name, kind))
    op.add_column("scene", sa.Column("generated_at", sa.DateTime(timezone=True)))
    op.add_column(
        "scene",
        sa.Column("reprocessed", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("scene_acquisition_key", "scene", ["acquisition_key"])
    op.create_table(
        "catalog_cursor",
        sa.Column(
            "aoi_id", sa.Integer, sa.ForeignKey("aoi.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("mode", sa.String(20), primary_key=True),
        sa.Column("position", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_start", sa.DateTime(timezone=True)),
        sa.Column("range_end", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('poll', 'backfill')", name="catalog_cursor_mode_known"),
    )


def downgrade() -> None:
    op.drop_table("catalog_cursor")
    op.drop_index("scene_acquisition_key", table_name="scene")
    for name in (
        "reprocessed",
        "generated_at",
        "superseded_by",
        "source",
        "platform",
        "sensor",
        "acquisition_key",
    ):
        op.drop_column("scene", name)
    op.drop_constraint("aoi_max_cloud_cover_percent", "aoi")
    op.drop_constraint("aoi_season_days", "aoi")
    for name in ("created_at", "season_end", "season_start", "max_cloud_cover", "collections"):
        op.drop_column("aoi", name)
