"""Rights of the run-time roles: the services write rows, Grafana and analysts read.

``revisit_writer`` (the services): SELECT, INSERT, UPDATE, DELETE on every table and the
sequences, no DDL. ``revisit_reader`` (Grafana, analysts, QGIS, the features endpoint):
SELECT only. The schema's owner (who runs the migrations) keeps the DDL; default
privileges give both roles the same rights on the tables of later migrations. Neither
role is created here (that needs CREATEROLE, which the owner lacks): the embedded stack
creates them (`revisit_cli/stack/postgres.py`), a production database its administrator
(docs in README "Database roles"). A role that does not exist is skipped.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"

WRITER, READER = "revisit_writer", "revisit_reader"
RIGHTS = {
    WRITER: (
        "SELECT, INSERT, UPDATE, DELETE ON ALL TABLES",
        "USAGE, SELECT ON ALL SEQUENCES",
        "SELECT, INSERT, UPDATE, DELETE ON TABLES",
        "USAGE, SELECT ON SEQUENCES",
    ),
    READER: ("SELECT ON ALL TABLES", "", "SELECT ON TABLES", ""),
}


def _if_role(role: str, statements: list[str]) -> None:
    body = " ".join(f"EXECUTE {s!r};" for s in statements if s)
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
        f"THEN {body} END IF; END $$"
    )


def upgrade() -> None:
    for role, (tables, sequences, default_tables, default_sequences) in RIGHTS.items():
        statements = [
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT {tables} IN SCHEMA public TO {role}",
            f"GRANT {sequences} IN SCHEMA public TO {role}" if sequences else "",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {default_tables} TO {role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {default_sequences} TO {role}"
            if default_sequences
            else "",
        ]
        _if_role(role, statements)


def downgrade() -> None:
    for role, (_, _, default_tables, default_sequences) in RIGHTS.items():

        def rights(grant: str) -> str:
            return grant.split(" ON ")[0]

        statements = [
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE {rights(default_tables)} "
            f"ON TABLES FROM {role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE {rights(default_sequences)} "
            f"ON SEQUENCES FROM {role}"
            if default_sequences
            else "",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
            f"REVOKE USAGE ON SCHEMA public FROM {role}",
        ]
        _if_role(role, statements)
