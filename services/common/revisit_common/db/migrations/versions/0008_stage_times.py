"""Where a scene's time goes: when preprocess and inference produced the events behind
each ``scene_processing`` row, beside ``discovered_at`` (catalog) and ``completed_at``
(store). Rows written before stay NULL there.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

COLUMNS = ("preprocessed_at", "inferred_at")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("scene_processing", sa.Column(column, sa.DateTime(timezone=True)))


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_column("scene_processing", column)
