"""What the deployment tests read: the compose stack, the rendered kustomize overlays, the
settings classes of the services, and the tools that check them (found next to the
interpreter first: the venv's kubectl and hadolint wheels)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from revisit_catalog.main import CatalogSettings
from revisit_cli.stack import REPO_ROOT
from revisit_common.events import OBSERVATIONS_TOPIC, PREDICTIONS_TOPIC, SCENES_TOPIC
from revisit_inference.main import InferenceSettings
from revisit_preprocess.main import PreprocessSettings
from revisit_store.main import StoreSettings

DOCKER = REPO_ROOT / "docker"
K8S = REPO_ROOT / "k8s"
OVERLAYS = ("dev", "prod-gpu")
SETTINGS: dict[str, type[BaseSettings]] = {
    "catalog": CatalogSettings,
    "preprocess": PreprocessSettings,
    "inference": InferenceSettings,
    "store": StoreSettings,
}
#: what a deployed service cannot run without, beyond the fields without a default: the
#: defaults point at the embedded stack on 127.0.0.1, or pick a random metrics port.
DEPLOY_REQUIRED = {
    "catalog": {"kafka_bootstrap", "metrics_host", "metrics_port", "database_url"},
    "preprocess": {"kafka_bootstrap", "metrics_host", "metrics_port", "database_url"},
    "inference": {
        "kafka_bootstrap",
        "metrics_host",
        "metrics_port",
        "triton_grpc_url",
        "model_repository",
    },
    "store": {"kafka_bootstrap", "metrics_host", "metrics_port", "database_url"},
}
#: the topic each consumer reads (its runtime Stage), and its consumer group
INPUT_TOPIC = {
    "preprocess": SCENES_TOPIC,
    "inference": OBSERVATIONS_TOPIC,
    "store": PREDICTIONS_TOPIC,
}
TOPICS_FILE = REPO_ROOT / "infra" / "kafka" / "topics.yaml"


def tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def env_var(field: str) -> str:
    return f"REVISIT_{field.upper()}"


def settings_fields(service: str) -> dict[str, Any]:
    return dict(SETTINGS[service].model_fields)


def required_vars(service: str) -> set[str]:
    fields = settings_fields(service)
    required = {n for n, f in fields.items() if f.is_required()} | DEPLOY_REQUIRED[service]
    return {env_var(n) for n in required}


def topic_partitions() -> dict[str, int]:
    data = yaml.safe_load(TOPICS_FILE.read_text())
    return {t["name"]: int(t["partitions"]) for t in data["topics"]}


# --- compose -------------------------------------------------------------------------


@cache
def compose(name: str = "compose.yaml") -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())  # merge keys (<<) resolved


def dockerfile_env(dockerfile: Path) -> dict[str, str]:
    """ENV of the final stage (`KEY=value` forms, continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    final = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S*)", line[4:]):
                env[key] = value
    return env


def compose_service_env(service: str) -> dict[str, str]:
    """The environment a service's container sees: its image's ENV, then compose's."""
    spec = compose()["services"][service]
    env = dockerfile_env(REPO_ROOT / spec["build"]["dockerfile"])
    env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
    return env


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with the default; `$$` is a literal `$`."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    return value.replace("$$", "$")


# --- kustomize -----------------------------------------------------------------------


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = tool("kubectl")
    if kubectl is None:
        raise LookupError("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert found, f"no {kind} {name}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"])


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's env; `$(VAR)` references expanded, values from Secrets and
    ConfigMaps replaced by a placeholder (their content is not in the manifests)."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        value = item.get("value", "placeholder" if "valueFrom" in item else "")
        env[item["name"]] = re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: env.get(m[1], m[0]), value)
    return env
