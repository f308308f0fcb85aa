"""Apache Kafka in KRaft mode (one combined broker + controller) from the official jars."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import shutil
import socket
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import StackConfig
from .process import ManagedProcess, MissingDependencyError, StackError, ensure_port_free

NAME = "kafka"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class TopicSpec:
    """One topic of ``infra/kafka/topics.yaml``."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


def load_topics(path: Path) -> list[TopicSpec]:
    """Read topic specs; per-topic ``config`` is merged over ``defaults.config``."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    defaults: dict[str, Any] = data.get("defaults") or {}
    default_rf = int(defaults.get("replication_factor", 1))
    default_cfg = {str(k): str(v) for k, v in (defaults.get("config") or {}).items()}
    specs = []
    for item in data.get("topics") or []:
        cfg = {**default_cfg, **{str(k): str(v) for k, v in (item.get("config") or {}).items()}}
        specs.append(
            TopicSpec(
                name=str(item["name"]),
                partitions=int(item.get("partitions", defaults.get("partitions", 1))),
                replication_factor=int(item.get("replication_factor", default_rf)),
                config=cfg,
            )
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise StackError(f"{path}: duplicate topic names")
    return specs


def _admin(bootstrap: str, timeout_ms: int = 5000) -> Any:
    from kafka.admin import KafkaAdminClient  # type: ignore[import-untyped, unused-ignore]

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="revisit-stack",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[str]:
    """Create missing topics and grow partition counts that are too small.

    Idempotent; partitions are never reduced (Kafka cannot). Returns the created names.
    """
    from kafka.admin import NewPartitions, NewTopic  # type: ignore[import-untyped, unused-ignore]
    from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped, unused-ignore]

    specs = list(specs)
    admin = _admin(bootstrap, timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            # TopicAlreadyExists: a concurrent `up` created it first.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [
                        NewTopic(
                            name=s.name,
                            num_partitions=s.partitions,
                            replication_factor=s.replication_factor,
                            topic_configs=dict(s.config),
                        )
                        for s in missing
                    ],
                    timeout_ms=15000,
                )
        present = [s for s in specs if s.name in existing]
        if present:
            current = _partition_counts(admin, [s.name for s in present])
            grow = {
                s.name: NewPartitions(total_count=s.partitions)
                for s in present
                if current.get(s.name, s.partitions) < s.partitions
            }
            if grow:
                admin.create_partitions(grow, timeout_ms=15000)
        return [s.name for s in missing]
    finally:
        admin.close()


def _partition_counts(admin: Any, names: list[str]) -> dict[str, int]:
    counts = {}
    for topic in admin.describe_topics(names):
        # kafka-python 3 names the field after the protocol schema ("name"); 2.x used "topic".
        name = topic.get("name", topic.get("topic"))
        if not topic.get("error_code"):
            counts[str(name)] = len(topic.get("partitions") or [])
    return counts


def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each existing topic among ``names`` (missing ones are left out)."""
    admin = _admin(bootstrap)
    try:
        return _partition_counts(admin, list(names))
    finally:
        admin.close()


def is_healthy(config: StackConfig) -> bool:
    """The broker answers a metadata request."""
    from kafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]

    try:
        with socket.create_connection(("127.0.0.1", config.kafka_port), timeout=1):
            pass
    except OSError:
        return False
    try:
        admin = _admin(config.kafka_bootstrap, timeout_ms=3000)
    except (KafkaError, OSError):
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


# -- jars -----------------------------------------------------------------------------


def pom_path(config: StackConfig) -> Path:
    return config.repo_root / "infra" / "kafka" / "pom.xml"


def kafka_version(pom: Path) -> str:
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not node.text:
        raise StackError(f"{pom}: no <kafka.version> property")
    return node.text.strip()


def ensure_jars(config: StackConfig) -> Path:
    """Copy Kafka's runtime jars once into ``cache_dir/kafka-<version>/libs`` (shared)."""
    pom = pom_path(config)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    home = config.cache_dir / f"kafka-{kafka_version(pom)}"
    libs, marker = home / "libs", home / "complete"
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs
    home.mkdir(parents=True, exist_ok=True)
    # Several clones (or concurrent `up`s) share the cache: serialise the copy.
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == digest:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise MissingDependencyError(
                "kafka: Maven (mvn) is needed once to fetch the Kafka jars; "
                "install it (apt-get install maven)"
            )
        tmp = home / "libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            [
                mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not any(tmp.glob("kafka_*.jar")):
            raise StackError(
                f"kafka: `mvn dependency:copy-dependencies` on {pom} failed "
                f"(rc={proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        marker.write_text(digest + "\n")
    return libs


# -- broker ---------------------------------------------------------------------------


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MissingDependencyError(
            "kafka: java not found; install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
        )
    return java


def _cluster_id(home: Path) -> str:
    path = home / "cluster.id"
    if path.is_file():
        return path.read_text().strip()
    while True:
        # Kafka's Uuid text form: url-safe base64 of 16 random bytes, never starting with '-'.
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            break
    path.write_text(cid + "\n")
    return cid


def server_properties(config: StackConfig, data_dir: Path) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{config.kafka_controller_port}",
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{config.kafka_port},"
            f"CONTROLLER://127.0.0.1:{config.kafka_controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{config.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Topics come only from topics.yaml, so a typo in a producer fails loudly.
        "auto.create.topics.enable": "false",
        # Consumers in tests join a group immediately instead of after 3 s.
        "group.initial.rebalance.delay.ms": "0",
    }
    lines = ["# generated by revisit_cli.stack.kafka; edits are overwritten on `stack up`"]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def process(config: StackConfig) -> ManagedProcess:
    """The broker's ManagedProcess (argv filled in by :func:`start`)."""
    return ManagedProcess.attach(NAME, config.state_dir)


def start(config: StackConfig) -> ManagedProcess:
    """Fetch jars (once), format storage (once), write properties and spawn the broker."""
    java = _java()
    ensure_port_free(config.kafka_port, "kafka_port")
    ensure_port_free(config.kafka_controller_port, "kafka_controller_port")
    libs = ensure_jars(config)
    home = config.state_dir / "kafka"
    data_dir = home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    props_file = home / "server.properties"
    props_file.write_text(server_properties(config, data_dir))
    log4j = config.repo_root / "infra" / "kafka" / "log4j2.yaml"
    jvm = [
        "-cp", f"{libs}/*",
        f"-Dlog4j2.configurationFile={log4j}",
        "-Djava.awt.headless=true",
    ]  # fmt: skip
    if not (data_dir / "meta.properties").is_file():
        config.logs_dir.mkdir(parents=True, exist_ok=True)
        with config.log_file(NAME).open("ab") as log:
            fmt = subprocess.run(
                [
                    java, *jvm, "kafka.tools.StorageTool", "format",
                    "--ignore-formatted", "-t", _cluster_id(home), "-c", str(props_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=config.startup_timeout_s,
                check=False,
            )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(
                f"kafka: formatting {data_dir} failed (rc={fmt.returncode}); "
                f"read {config.log_file(NAME)}"
            )
    proc = ManagedProcess(
        NAME,
        [java, f"-Xmx{config.kafka_heap}", *jvm, "kafka.Kafka", str(props_file)],
        None,
        home,
        config.state_dir,
    )
    proc.start()
    return proc


def after_ready(config: StackConfig) -> list[str]:
    """Create the topics of ``config.kafka_topics_file``; returns the created names."""
    return ensure_topics(config.kafka_bootstrap, load_topics(config.kafka_topics_file))
