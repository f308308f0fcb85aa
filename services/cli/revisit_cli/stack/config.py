"""Settings of the embedded stack (Kafka, PostgreSQL/PostGIS, Triton) on one machine."""

from __future__ import annotations

import os
import random
import socket
import sys
from contextlib import ExitStack
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def _find_repo_root() -> Path:
    """The repository root: the first parent holding ``infra/kafka/pom.xml``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "infra" / "kafka" / "pom.xml").is_file():
            return parent
    # services/cli/revisit_cli/stack/config.py -> four levels up is the repo root
    return here.parents[4]


REPO_ROOT = _find_repo_root()


class StackConfig(BaseSettings):
    """Where and on which ports the embedded stack runs.

    Every field can be set from the environment with the ``REVISIT_`` prefix:

    - ``REVISIT_STATE_DIR``: data dirs, ``logs/`` and ``run/`` (pid files) [<repo>/.revisit]
    - ``REVISIT_CACHE_DIR``: shared cache; Kafka jars go to ``kafka-<version>/`` [~/.cache/revisit]
    - ``REVISIT_KAFKA_PORT``: Kafka PLAINTEXT listener [19092]
    - ``REVISIT_KAFKA_CONTROLLER_PORT``: KRaft controller listener [19093]
    - ``REVISIT_KAFKA_HEAP``: JVM ``-Xmx`` of the broker [512m]
    - ``REVISIT_KAFKA_TOPICS_FILE``: topic definitions [<repo>/infra/kafka/topics.yaml]
    - ``REVISIT_POSTGRES_PORT``: PostgreSQL TCP port on 127.0.0.1 [15432]
    - ``REVISIT_POSTGRES_BIN_DIR``: initdb/pg_ctl/postgres [/usr/lib/postgresql/15/bin]
    - ``REVISIT_POSTGRES_DB``: application database [revisit]
    - ``REVISIT_POSTGRES_USER``: application role, owner of the database [revisit]
    - ``REVISIT_TRITON_HTTP_PORT`` [18000], ``REVISIT_TRITON_GRPC_PORT`` [18001],
      ``REVISIT_TRITON_METRICS_PORT`` [18002]: Triton endpoints on 127.0.0.1
    - ``REVISIT_TRITON_MODEL_REPOSITORY``: model repository [<repo>/infra/triton/models]
    - ``REVISIT_PROMETHEUS_PORT`` [19090], ``REVISIT_PROMETHEUS_SCRAPE_INTERVAL_S`` [5]:
      Prometheus on 127.0.0.1, scraping the stack and the services
    - ``REVISIT_POSTGRES_EXPORTER_PORT``: the PostgreSQL exporter's ``/metrics`` [19187]
    - ``REVISIT_PYTHON``: interpreter of the venv holding nvidia-pytriton [sys.executable]
    - ``REVISIT_STARTUP_TIMEOUT_S``: how long ``up`` waits for each component [120]
    """

    model_config = SettingsConfigDict(env_prefix="REVISIT_", frozen=True)

    state_dir: Path = REPO_ROOT / ".revisit"
    cache_dir: Path = Path.home() / ".cache" / "revisit"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    kafka_topics_file: Path = REPO_ROOT / "infra" / "kafka" / "topics.yaml"
    postgres_port: int = 15432
    postgres_bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    postgres_db: str = "revisit"
    postgres_user: str = "revisit"  # owns the schema: migrations only
    postgres_writer: str = "revisit_writer"  # the services
    postgres_reader: str = "revisit_reader"  # Grafana, analysts, QGIS
    triton_http_port: int = 18000
    triton_grpc_port: int = 18001
    triton_metrics_port: int = 18002
    triton_model_repository: Path = REPO_ROOT / "infra" / "triton" / "models"
    prometheus_port: int = 19090
    prometheus_scrape_interval_s: float = 5.0
    postgres_exporter_port: int = 19187
    python: Path = Path(sys.executable)
    startup_timeout_s: float = 120.0

    @property
    def repo_root(self) -> Path:
        return REPO_ROOT

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of the application database, as the schema
        owner (migrations, tests)."""
        return self.database_url_as(self.postgres_user)

    @property
    def writer_database_url(self) -> str:
        """As the services' role: reads and writes rows, changes no schema."""
        return self.database_url_as(self.postgres_writer)

    @property
    def reader_database_url(self) -> str:
        """As the read-only role of Grafana and analysts."""
        return self.database_url_as(self.postgres_reader)

    def database_url_as(self, user: str) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.postgres_port}/{self.postgres_db}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def triton_grpc_url(self) -> str:
        return f"127.0.0.1:{self.triton_grpc_port}"

    @property
    def triton_http_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_http_port}"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"


def command_database_url(flag: str | None = None, *, reader: bool = False) -> str:
    """The database a `revisit` command works on: its flag, else ``REVISIT_DATABASE_URL``,
    else the embedded stack's (as the schema's owner). With `reader`, the read-only
    role's: the flag, else ``REVISIT_READER_DATABASE_URL``, else the stack's reader."""
    if reader:
        env, default = "REVISIT_READER_DATABASE_URL", StackConfig().reader_database_url
    else:
        env, default = "REVISIT_DATABASE_URL", StackConfig().database_url
    return flag or os.environ.get(env) or default


def command_kafka_bootstrap(flag: str | None = None) -> str:
    """The broker a `revisit` command talks to: its flag, else
    ``REVISIT_KAFKA_BOOTSTRAP``, else the embedded stack's."""
    return flag or os.environ.get("REVISIT_KAFKA_BOOTSTRAP") or StackConfig().kafka_bootstrap


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for tests)."""
    return free_ports(1)[0]


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, consecutive: bool = False) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free now (``consecutive``: in a
    row), below the ephemeral range: a readiness probe of a port there that is not
    listening yet can connect to itself (TCP simultaneous open) and read its own request
    back, and the server then cannot bind it."""
    low = 20000
    high = max(low + 1000, ephemeral_ports()[0]) - count
    for _ in range(200):
        base = random.randint(low, high)
        candidates = (
            list(range(base, base + count))
            if consecutive
            else random.sample(range(low, high + count), count)
        )
        with ExitStack() as stack:
            try:
                for port in candidates:
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return candidates
    raise RuntimeError(f"no {count} free ports found between {low} and {high + count}")
