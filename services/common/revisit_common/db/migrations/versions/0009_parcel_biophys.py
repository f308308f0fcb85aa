"""Biophysics per parcel: ``parcel_biophys`` holds LAI, CCC and FCOVER of each parcel per
pass (mean and median over its sampled valid pixels, and how many valid pixels it had),
the biophysical model named with each row, beside the crop-type history.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "parcel_biophys",
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
        *(
            sa.Column(f"{v}_{s}", sa.REAL, nullable=False)
            for v in ("lai", "ccc", "fcover")
            for s in ("mean", "median")
        ),
        sa.Column("pixels", sa.SmallInteger, nullable=False),
        sa.UniqueConstraint(
            "parcel_id", "acquired_at", "model_name", "model_version", name="parcel_biophys_key"
        ),
    )
    op.create_index("parcel_biophys_acquired_at", "parcel_biophys", ["acquired_at"])


def downgrade() -> None:
    op.drop_table("parcel_biophys")
