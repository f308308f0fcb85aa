"""Alembic environment: online migrations against the configured database URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from revisit_common.db.models import Base

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
