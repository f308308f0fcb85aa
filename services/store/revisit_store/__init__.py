"""The store service: predictions in, PostGIS rows out (idempotent upserts)."""
