"""The PostGIS schema of revisit (SQLAlchemy + GeoAlchemy2) and its Alembic migrations."""
