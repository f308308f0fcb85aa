"""Prometheus and the PostgreSQL exporter of the embedded stack (Debian packages).

Prometheus scrapes itself, Triton's ``/metrics``, the PostgreSQL exporter and the
services, whose targets are a file (``file_sd``) that the services' launcher writes
(`targets_file`): the stack does not know the services' ports. It evaluates the
project's rules (``infra/prometheus/rules/*.yml``) and keeps its data under
``<state_dir>/prometheus``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from .config import StackConfig
from .process import ManagedProcess, MissingDependencyError, ensure_port_free, http_ok

NAME, EXPORTER = "prometheus", "postgres-exporter"


def rules_dir(config: StackConfig) -> Path:
    return config.repo_root / "infra" / "prometheus" / "rules"


def targets_file(config: StackConfig) -> Path:
    """The services' scrape targets (Prometheus file_sd JSON), re-read when it changes."""
    return config.state_dir / NAME / "targets" / "services.json"


def write_targets(config: StackConfig, targets: dict[str, str]) -> None:
    """Scrape these services (name -> host:port) from now on."""
    path = targets_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": [t], "labels": {"service": name}} for name, t in targets.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=2))
    tmp.replace(path)  # Prometheus never reads half a file


def scrape_config(config: StackConfig) -> dict[str, Any]:
    interval = f"{config.prometheus_scrape_interval_s:g}s"
    static = {
        "prometheus": config.prometheus_port,
        "triton": config.triton_metrics_port,
        "postgres": config.postgres_exporter_port,
    }
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules_dir(config) / "*.yml")],
        "scrape_configs": [
            *(
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for job, port in static.items()
            ),
            {
                "job_name": "revisit",
                "file_sd_configs": [
                    {"files": [str(targets_file(config))], "refresh_interval": interval}
                ],
            },
        ],
    }


def _program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if found is None:
        raise MissingDependencyError(
            f"{name} not found: `make install` installs it (Debian package "
            f"{'prometheus' if name == 'prometheus' else 'prometheus-postgres-exporter'})"
        )
    return found


def start(config: StackConfig) -> ManagedProcess:
    ensure_port_free(config.prometheus_port, "prometheus_port")
    root = config.state_dir / NAME
    (root / "data").mkdir(parents=True, exist_ok=True)
    if not targets_file(config).exists():
        write_targets(config, {})
    config_file = root / "prometheus.yml"
    config_file.write_text(
        "# Written by `revisit stack up` (revisit_cli/stack/prometheus.py); edits are lost.\n"
        + yaml.safe_dump(scrape_config(config), sort_keys=False)
    )
    proc = ManagedProcess(
        NAME,
        [
            _program("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{config.prometheus_port}",
            "--storage.tsdb.retention.time=15d",
            "--web.enable-lifecycle",  # POST /-/reload after editing the rules
        ],
        None,
        root,
        config.state_dir,
    )
    proc.start()
    return proc


def start_exporter(config: StackConfig) -> ManagedProcess:
    ensure_port_free(config.postgres_exporter_port, "postgres_exporter_port")
    dsn = (
        f"postgresql://{config.postgres_reader}@127.0.0.1:{config.postgres_port}/"
        f"{config.postgres_db}?sslmode=disable"
    )
    proc = ManagedProcess(
        EXPORTER,
        [
            _program("prometheus-postgres-exporter"),
            f"--web.listen-address=127.0.0.1:{config.postgres_exporter_port}",
        ],
        {"DATA_SOURCE_NAME": dsn},  # the read-only role: pg_stat_* are public
        config.state_dir,
        config.state_dir,
    )
    proc.start()
    return proc


def is_healthy(config: StackConfig) -> bool:
    return http_ok(f"{config.prometheus_url}/-/ready")


def exporter_is_healthy(config: StackConfig) -> bool:
    return http_ok(f"http://127.0.0.1:{config.postgres_exporter_port}/metrics")
