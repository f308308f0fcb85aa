"""`revisit features`: the results as OGC API Features and Mapbox vector tiles over HTTP,
for QGIS and web maps, served by tipg (developmentseed's OGC Features and Tiles API for
PostGIS) as the read-only role.

Collections are the tables and views of one schema, named ``SCHEMA.NAME`` (e.g.
``public.parcel_latest``); by default the results users map (DEFAULT_TABLES: each latest
crop of a parcel and its control flag, each parcel's latest LAI, CCC and FCOVER, each
cell's latest LCZ, the land-cover and biophysical rows of each area unit (district) with
its geometry, the AOIs, area units and parcels) and two tables without geometry that QGIS can
join (land-cover indicators per area, LCZ shares per city), plus ``parcel_control_at``
(a function: its ``min_confidence`` is a query parameter). ``--tables all`` serves every
table and view with a geometry that the role can read.

tipg takes its settings from the environment: this command sets ``DATABASE_URL`` and the
``TIPG_DB_*`` selection; every other ``TIPG_*`` variable a user sets (e.g.
``TIPG_MAX_FEATURES_PER_QUERY``, ``TIPG_CATALOG_TTL``, ``TIPG_TABLE_CONFIG__...``) is
passed through. The database is checked before the server starts: unreachable, not
migrated, or a table the role cannot read is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from revisit_cli.stack import command_database_url
from revisit_cli.stack.process import bind_error

if TYPE_CHECKING:  # tipg and FastAPI load when the server starts
    from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 19300
DEFAULT_SCHEMA = "public"
#: The relations served without --tables: the result views first, then their context.
DEFAULT_TABLES = (
    "parcel_latest",
    "parcel_control",
    "parcel_biophys_latest",
    "lcz_latest",
    "aoi",
    "parcel",
    "area_unit_indicator",
    "area_unit",
    "landcover_indicator",
    "lcz_share",
)
#: The stable row id of each view (views have no primary key).
VIEW_KEYS = {
    "parcel_latest": "prediction_id",
    "parcel_control": "prediction_id",
    "parcel_biophys_latest": "biophys_id",
    "area_unit_indicator": "id",
}
#: Set-returning functions served as collections (their arguments are query parameters).
DEFAULT_FUNCTIONS = ("parcel_control_at",)
#: Features per page when a request gives no `limit` (tipg's own default is 10).
DEFAULT_LIMIT = 1000
TITLE = "revisit: indicators from satellite passes"
ALL = "all"


class FeaturesError(RuntimeError):
    """The endpoint cannot start: the one line to print."""


@dataclass(frozen=True)
class FeaturesConfig:
    database_url: str  # SQLAlchemy or libpq URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    schema: str = DEFAULT_SCHEMA
    tables: tuple[str, ...] | None = DEFAULT_TABLES  # None: every spatial one
    functions: tuple[str, ...] = DEFAULT_FUNCTIONS
    limit: int = DEFAULT_LIMIT

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


def libpq_url(url: str) -> str:
    """``postgresql://…`` (what asyncpg and libpq read) from a SQLAlchemy URL such as
    ``postgresql+psycopg://…``; the password kept."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise FeaturesError(f"not a database URL: {url!r}") from exc
    if not parsed.drivername.startswith(("postgresql", "postgres")):
        raise FeaturesError(f"not a PostgreSQL URL: {parsed.render_as_string()}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def tipg_environment(config: FeaturesConfig) -> dict[str, str]:
    """The environment variables that make tipg serve `config`."""
    only_spatial = config.tables is None
    env = {
        "DATABASE_URL": libpq_url(config.database_url),
        "TIPG_NAME": TITLE,
        "TIPG_DB_SCHEMAS": json.dumps([config.schema]),
        "TIPG_DB_FUNCTIONS": json.dumps([f"{config.schema}.{f}" for f in config.functions]),
        "TIPG_DB_ONLY_SPATIAL_TABLES": str(only_spatial).lower(),
        "TIPG_DEFAULT_FEATURES_LIMIT": str(config.limit),
        # a tile's layer is named after its table, not "default"
        "TIPG_SET_MVT_LAYERNAME": "true",
    }
    if config.tables is not None:
        env["TIPG_DB_TABLES"] = json.dumps([f"{config.schema}.{t}" for t in config.tables])
    # Views have no primary key: a stable id keeps a feature the same across requests
    # (QGIS drops features whose id it has already seen).
    for view, pk in VIEW_KEYS.items():
        key = f"TIPG_TABLE_CONFIG__{config.schema}_{view}__PK"
        if key not in os.environ:
            env[key] = pk
    return env


def check_port(host: str, port: int) -> None:
    exc = bind_error(host, port)
    if exc is not None:
        raise FeaturesError(
            f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port"
        ) from exc


def check_database(config: FeaturesConfig) -> list[str]:
    """Reach the database as the endpoint will and check what it serves; the warnings to
    print. Raises FeaturesError when it is unreachable or lacks a relation to serve."""
    import psycopg

    where = _shown(config.database_url)
    try:
        conn = psycopg.connect(libpq_url(config.database_url), connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise FeaturesError(f"cannot reach the database {where}: {reason}") from exc
    with conn:
        row = conn.execute(
            "SELECT current_user, EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')"
        ).fetchone()
        assert row is not None
        user, postgis = str(row[0]), bool(row[1])
        if not postgis:
            raise FeaturesError(f"the database {where} has no PostGIS: run `revisit db upgrade`")
        if config.tables is None:
            names = [
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT f_table_name FROM geometry_columns WHERE f_table_schema = %s",
                    (config.schema,),
                )
            ]
            if not names:
                raise FeaturesError(f"no table or view with a geometry in schema {config.schema}")
        else:
            names = list(config.tables)
        missing, unreadable, writable = [], [], []
        for name in names:
            qualified = f"{config.schema}.{name}"
            found = conn.execute(
                "SELECT c.oid IS NOT NULL, "
                "c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT'), "
                "c.oid IS NOT NULL AND (has_table_privilege(c.oid, 'INSERT') "
                "OR has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE'))"
                " FROM (SELECT to_regclass(%s)::oid AS oid) c",
                (f'"{config.schema}"."{name}"',),
            ).fetchone()
            assert found is not None
            if not found[0]:
                missing.append(qualified)
            elif not found[1]:
                unreadable.append(qualified)
            elif found[2]:
                writable.append(qualified)
        for function in config.functions:
            exists = conn.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s AND p.proname = %s",
                (config.schema, function),
            ).fetchone()
            if not exists or not exists[0]:
                missing.append(f"{config.schema}.{function}()")
    if missing:
        raise FeaturesError(
            f"{where} has no {', '.join(missing)}: run `revisit db upgrade`, or choose "
            "--tables / --functions"
        )
    if unreadable:
        raise FeaturesError(f"role {user} cannot read {', '.join(unreadable)} in {where}")
    if writable:
        return [
            f"warning: role {user} can write {', '.join(writable)}; the endpoint only reads, "
            "but give it the read-only role (REVISIT_READER_DATABASE_URL)"
        ]
    return []


def tipg_app(config: FeaturesConfig) -> FastAPI:
    """tipg's application, set up for `config` (tipg reads its settings from the
    environment once, when its modules are imported: this sets them first)."""
    os.environ.update(tipg_environment(config))
    from pydantic import ValidationError

    try:
        from tipg.main import app
    except ValidationError as exc:
        errors = "; ".join(
            ": ".join(p for p in (".".join(map(str, e["loc"])), e["msg"]) if p)
            for e in exc.errors()
        )
        raise FeaturesError(f"invalid TIPG_* setting in the environment: {errors}") from exc
    return app


def serve(app: FastAPI, config: FeaturesConfig) -> None:
    """Run `app` under uvicorn until interrupted (SIGINT or SIGTERM)."""
    import uvicorn

    uvicorn.run(app, host=config.host, port=config.port, log_level="info", access_log=True)


def _names(value: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in value.split(",") if n.strip())


def cmd_features(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2

    tables = None if args.tables.strip() == ALL else _names(args.tables)
    if tables == ():
        return fail("--tables names no table")
    config = FeaturesConfig(
        database_url=command_database_url(args.database_url, reader=True),
        host=args.host,
        port=args.port,
        schema=args.schema,
        tables=tables,
        functions=_names(args.functions),
        limit=args.limit,
    )
    try:
        check_port(config.host, config.port)
        for line in check_database(config):
            print(line, file=sys.stderr, flush=True)
        app = tipg_app(config)
        served = ", ".join(config.tables or ("every table and view with a geometry",))
        print(
            f"OGC API Features and vector tiles of {_shown(config.database_url)} "
            f"({config.schema}: {served}) on {config.base_url}/ ; "
            f"QGIS: add an OGC API - Features connection with URL {config.base_url}",
            flush=True,
        )
        serve(app, config)
    except FeaturesError as exc:
        return fail(str(exc))
    return 0


def add_parsers(sub: Any) -> None:
    features = sub.add_parser(
        "features",
        help="serve the results as OGC API Features and vector tiles (QGIS, web maps)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    features.add_argument("--host", default=DEFAULT_HOST, help=f"address [{DEFAULT_HOST}]")
    features.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"[{DEFAULT_PORT}]")
    features.add_argument(
        "--database-url",
        help="SQLAlchemy or libpq URL (default: REVISIT_READER_DATABASE_URL, else the "
        "embedded stack's database as the read-only role revisit_reader)",
    )
    features.add_argument(
        "--schema", default=DEFAULT_SCHEMA, help=f"schema of the tables [{DEFAULT_SCHEMA}]"
    )
    features.add_argument(
        "--tables",
        default=",".join(DEFAULT_TABLES),
        help="comma-separated tables and views to serve, or 'all': every one with a "
        f"geometry [{','.join(DEFAULT_TABLES)}]",
    )
    features.add_argument(
        "--functions",
        default=",".join(DEFAULT_FUNCTIONS),
        help="comma-separated set-returning functions to serve, '' for none "
        f"[{','.join(DEFAULT_FUNCTIONS)}]",
    )
    features.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"features per page when a request sets no limit [{DEFAULT_LIMIT}]",
    )
    features.set_defaults(func=cmd_features)
