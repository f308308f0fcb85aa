"""PostgreSQL 15 + PostGIS 3 from the Debian packages, in a private data directory.

The cluster lives in ``<state_dir>/postgres/data``, listens only on 127.0.0.1 and never
touches a system cluster (port 5432, /var/lib/postgresql). Authentication is ``trust``
on loopback: this is a local, single-user development/test stack only. Production
deployments use a managed database and credentials from secrets, never this module.

PostgreSQL refuses to run as root, so as root every server program runs as the system
user ``postgres`` through ``runuser`` and the cluster's directories are owned by it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from .config import StackConfig
from .process import ManagedProcess, MissingDependencyError, StackError, ensure_port_free

NAME = "postgres"
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
# sockaddr_un.sun_path is 108 bytes; longer socket paths make postgres fail to start.
_MAX_SOCKET_PATH = 100


def home_dir(config: StackConfig) -> Path:
    return config.state_dir / "postgres"


def data_dir(config: StackConfig) -> Path:
    return home_dir(config) / "data"


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _program(config: StackConfig, prog: str) -> Path:
    path = config.postgres_bin_dir / prog
    if not os.access(path, os.X_OK):
        raise MissingDependencyError(
            f"postgres: {path} not found; install postgresql-15-postgis-3 "
            f"(apt-get install postgresql-15 postgresql-15-postgis-3) or set "
            f"postgres_bin_dir (env REVISIT_POSTGRES_BIN_DIR)"
        )
    return path


def _argv(argv: list[str]) -> list[str]:
    user = _run_as()
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


def _socket_dir(config: StackConfig) -> str:
    path = home_dir(config) / "run"
    if len(f"{path}/.s.PGSQL.{config.postgres_port}") > _MAX_SOCKET_PATH:
        return ""  # TCP only; every client of the stack uses 127.0.0.1 anyway
    return str(path)


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _prepare_dirs(config: StackConfig) -> None:
    """Create the cluster's dirs; as root, hand them to ``postgres`` and check the path."""
    home = home_dir(config)
    (home / "run").mkdir(parents=True, exist_ok=True)
    user_name = _run_as()
    if user_name is None:
        return
    user = pwd.getpwnam(user_name)
    state = config.state_dir.resolve()
    for directory in reversed(home.resolve().parents):
        if _can_traverse(directory, user):
            continue
        if directory == state or state in directory.parents:
            # Our own directory (e.g. made by mkdtemp with 0700): open it for traversal.
            directory.chmod(directory.stat().st_mode | stat.S_IXOTH)
        else:
            raise StackError(
                f"postgres: the system user {user_name!r} cannot traverse {directory} "
                f"(mode {stat.filemode(directory.stat().st_mode)}), which holds the state "
                f"dir; `chmod o+x {directory}` or set state_dir (env REVISIT_STATE_DIR) "
                f"to a path below world-traversable directories"
            )
    for root, dirs, files in os.walk(home):
        for name in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chown(name, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def initdb(config: StackConfig) -> bool:
    """Create the cluster unless it exists; returns True if it was created."""
    data = data_dir(config)
    if (data / "PG_VERSION").is_file():
        return False
    if data.exists() and any(data.iterdir()):
        raise StackError(f"postgres: {data} is neither empty nor a cluster; remove it")
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    with config.log_file(NAME).open("ab") as log:
        proc = subprocess.run(
            _argv(
                [
                    str(_program(config, "initdb")), "-D", str(data), "-U", SUPERUSER,
                    "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home_dir(config),
            timeout=config.startup_timeout_s,
            check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise StackError(f"postgres: initdb failed; read {config.log_file(NAME)}")
    return True


def process(config: StackConfig) -> ManagedProcess:
    return ManagedProcess.attach(NAME, config.state_dir)


def start(config: StackConfig) -> ManagedProcess:
    """initdb (once) and spawn ``postgres`` in the foreground as a ManagedProcess."""
    postgres = _program(config, "postgres")
    _program(config, "pg_ctl")
    if _run_as() is not None and shutil.which("runuser") is None:
        raise MissingDependencyError("postgres: runuser (util-linux) is needed as root")
    ensure_port_free(config.postgres_port, "postgres_port")
    _prepare_dirs(config)
    initdb(config)
    proc = ManagedProcess(
        NAME,
        [
            str(postgres), "-D", str(data_dir(config)),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={config.postgres_port}",
            "-c", f"unix_socket_directories={_socket_dir(config)}",
        ],
        None,
        home_dir(config),
        config.state_dir,
        run_as=_run_as(),
    )  # fmt: skip
    proc.start()
    return proc


def _connect(config: StackConfig, user: str, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=config.postgres_port,
        user=user,
        dbname=dbname,
        connect_timeout=3,
        autocommit=True,
    )


def is_ready(config: StackConfig) -> bool:
    """The server accepts connections (before the application database exists)."""
    try:
        with _connect(config, SUPERUSER, "postgres") as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def after_ready(config: StackConfig) -> None:
    """Create the roles (the schema's owner, the services' writer, the read-only
    reader: none a superuser), the database and the PostGIS extension (idempotent). The
    migrations grant the writer and the reader their rights on the tables."""
    user, db = config.postgres_user, config.postgres_db
    with _connect(config, SUPERUSER, "postgres") as conn:
        for role in (user, config.postgres_writer, config.postgres_reader):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                continue
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
                    sql.Identifier(role)
                )
            )
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db), sql.Identifier(user)
                )
            )
    # postgis is not a trusted extension: the superuser creates it in the app database.
    with _connect(config, SUPERUSER, db) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def is_healthy(config: StackConfig) -> bool:
    """The application role reaches its database and PostGIS answers."""
    try:
        with _connect(config, config.postgres_user, config.postgres_db) as conn:
            row = conn.execute("SELECT postgis_version()").fetchone()
        return row is not None and bool(row[0])
    except psycopg.Error:
        return False


def stop(config: StackConfig, timeout: float = 60.0) -> bool:
    """``pg_ctl stop -m fast``, then make sure no process of the group is left."""
    proc = process(config)
    data = data_dir(config)
    was_running = bool(proc.alive_members())
    if was_running and (data / "postmaster.pid").is_file():
        subprocess.run(
            _argv(
                [
                    str(_program(config, "pg_ctl")), "stop", "-D", str(data),
                    "-m", "fast", "-w", "-t", str(int(timeout)),
                ]
            ),
            capture_output=True,
            cwd=home_dir(config),
            timeout=timeout + 10,
            check=False,
        )  # fmt: skip
    return proc.stop(timeout=timeout) or was_running
