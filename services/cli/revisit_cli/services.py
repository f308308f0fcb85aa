"""The four revisit services as background processes of the embedded stack."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from revisit_cli.stack import REPO_ROOT, ManagedProcess, StackConfig, StackError
from revisit_cli.stack.prometheus import write_targets

#: Service name -> Python module; the order is the start order (sinks first).
SERVICES = {
    "store": "revisit_store",
    "inference": "revisit_inference",
    "preprocess": "revisit_preprocess",
    "catalog": "revisit_catalog",
}
SERVICE_DIRS = ("common", "models", "catalog", "preprocess", "inference", "store", "cli")


class ServicesConfig(BaseSettings):
    """How the stack runs the services. Environment variables:

    - ``REVISIT_METRICS_BASE_PORT``: store, inference, preprocess and catalog serve
      `/metrics` and `/healthz` on this port and the next three [19100].
    - ``REVISIT_CATALOG_SOURCE``: the STAC catalog the catalog service watches: a
      provider name, a STAC API URL or a static catalog [<state>/demo/catalog/catalog.json].
    - ``REVISIT_CATALOG_AOI_FILE``: AOIs saved at start-up [<repo>/infra/demo/aoi.geojson].
    - ``REVISIT_CATALOG_POLL_INTERVAL_S`` [5].
    - ``REVISIT_CATALOG_START``: where new poll cursors start [2020-01-01, the demo data's
      first month].
    - ``REVISIT_CATALOG_OVERLAP``: how far before its cursor each poll searches again, as
      an ISO 8601 duration [the catalog service's default, 3 days].
    """

    model_config = SettingsConfigDict(env_prefix="REVISIT_", frozen=True, extra="ignore")

    metrics_base_port: int = 19100
    catalog_source: str | None = None
    catalog_aoi_file: Path = REPO_ROOT / "infra" / "demo" / "aoi.geojson"
    catalog_poll_interval_s: float = 5.0
    catalog_start: str = "2020-01-01T00:00:00Z"
    catalog_overlap: str | None = None


@dataclass(frozen=True)
class ServiceEndpoint:
    name: str
    metrics_url: str
    health_url: str


def pythonpath() -> str:
    return ":".join(str(REPO_ROOT / "services" / d) for d in SERVICE_DIRS)


def endpoints(services: ServicesConfig) -> list[ServiceEndpoint]:
    return [
        ServiceEndpoint(
            name,
            f"http://127.0.0.1:{services.metrics_base_port + i}/metrics",
            f"http://127.0.0.1:{services.metrics_base_port + i}/healthz",
        )
        for i, name in enumerate(SERVICES)
    ]


def service_env(config: StackConfig, services: ServicesConfig, name: str) -> dict[str, str]:
    port = services.metrics_base_port + list(SERVICES).index(name)
    source = services.catalog_source or config.state_dir / "demo" / "catalog" / "catalog.json"
    env = {
        "PYTHONPATH": pythonpath(),
        "PYTHONUNBUFFERED": "1",
        "REVISIT_KAFKA_BOOTSTRAP": config.kafka_bootstrap,
        "REVISIT_DATABASE_URL": config.writer_database_url,  # not the schema owner
        "REVISIT_TRITON_GRPC_URL": config.triton_grpc_url,
        "REVISIT_MODEL_REPOSITORY": str(config.triton_model_repository),
        "REVISIT_PAYLOAD_DIR": str(config.state_dir / "payloads"),
        "REVISIT_METRICS_PORT": str(port),
        "REVISIT_CATALOG_SOURCE": str(source),
        "REVISIT_CATALOG_AOI_FILE": str(services.catalog_aoi_file),
        "REVISIT_CATALOG_POLL_INTERVAL_S": str(services.catalog_poll_interval_s),
        "REVISIT_CATALOG_START": services.catalog_start,
        # The store migrates at start-up unless told otherwise; the stack already has.
        "REVISIT_STORE_MIGRATE": "false",
        # one replica per service: a restarted one takes its partitions back at once
        "REVISIT_KAFKA_GROUP_INSTANCE_ID": f"{name}-0",
    }
    if services.catalog_overlap:
        env["REVISIT_CATALOG_OVERLAP"] = services.catalog_overlap
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.loads(response.read()).get("ok"))
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return False


def start_services(
    config: StackConfig, services: ServicesConfig, names: tuple[str, ...] = tuple(SERVICES)
) -> dict[str, float]:
    """Start the services not running yet; wait for their /healthz. Seconds per service."""
    times: dict[str, float] = {}
    by_name = {e.name: e for e in endpoints(services)}
    write_targets(
        config,
        {
            e.name: e.metrics_url.removeprefix("http://").removesuffix("/metrics")
            for e in by_name.values()
        },
    )
    for name in names:
        proc = ManagedProcess(
            name,
            [str(config.python), "-m", SERVICES[name]],
            service_env(config, services, name),
            REPO_ROOT,
            config.state_dir,
        )
        t0 = time.monotonic()
        if not proc.is_running():
            proc.start()
        deadline = t0 + config.startup_timeout_s
        while not _healthy(by_name[name].health_url):
            if not proc.is_running():
                raise StackError(f"{name} exited at start: read {proc.log_file}\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} not healthy after {config.startup_timeout_s:.0f} s: "
                    f"read {proc.log_file}"
                )
            time.sleep(0.2)
        times[name] = time.monotonic() - t0
    return times
