"""The shared runtime on the real Kafka broker: outputs acknowledged before commits,
poison to the DLQ with its reason, nothing lost across a restart of the consumer."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError, NotCoordinatorError
from prometheus_client import CollectorRegistry

from revisit_cli.stack import StackConfig, TopicSpec, ensure_topics
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import dlq_topic, now, root_header
from revisit_common.lag import group_lag, offsets_reader
from revisit_common.runtime import Output, ServiceApp, Stage
from revisit_common.settings import ServiceSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(stack: StackConfig) -> Iterator[tuple[str, str]]:
    name = f"test.{uuid.uuid4().hex[:8]}"
    source, target = f"{name}.scenes", f"{name}.observations"
    ensure_topics(
        stack.kafka_bootstrap,
        [TopicSpec(source, 2), TopicSpec(target, 1), TopicSpec(dlq_topic(source), 1)],
    )
    yield source, target


def read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
        group_id=None,
    )
    values = []
    for record in consumer:
        values.append(record.value)
        if len(values) >= expected:
            break
    consumer.close()
    return values


def scene(tile: str) -> bytes:
    return pb.SceneDiscovered(
        header=root_header("catalog", f"scene-{tile}", now(), now()), tile_id=tile
    ).SerializeToString()


def run(app: ServiceApp, stage: Stage[pb.SceneDiscovered]) -> threading.Thread:
    thread = threading.Thread(target=app.consume, args=(stage,), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("grouped", [False, True])
def test_outputs_dlq_and_commits(
    stack: StackConfig, topics: tuple[str, str], grouped: bool
) -> None:
    """One by one, or each poll's events together (`process_many`): a poison event in
    a group makes the group be handled again one by one, so only it goes to the DLQ."""
    source, target = topics
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    for tile in ("31UFS", "31UFT", "BAD", "31UGS"):
        producer.send(source, key=tile.encode(), value=scene(tile))
    producer.send(source, key=b"garbage", value=b"\x08\x96\x01 not a scene")
    producer.flush()

    def forward(event: pb.SceneDiscovered) -> list[Output]:
        if event.tile_id == "BAD":
            raise PoisonError("tile BAD has no band asset")
        out = pb.ObservationBatch(tile_id=event.tile_id)
        return [Output(target, event.tile_id.encode(), out)]

    groups: list[int] = []

    def forward_all(events: list[pb.SceneDiscovered]) -> list[list[Output]]:
        groups.append(len(events))
        return [forward(event) for event in events]

    settings = ServiceSettings(kafka_bootstrap=stack.kafka_bootstrap)
    app = ServiceApp("preprocess", settings, CollectorRegistry())
    stage = Stage(
        "preprocess", source, pb.SceneDiscovered, forward, forward_all if grouped else None
    )
    thread = run(app, stage)

    outputs = read_all(stack.kafka_bootstrap, target, 3)
    letters = [
        pb.DeadLetter.FromString(v) for v in read_all(stack.kafka_bootstrap, dlq_topic(source), 2)
    ]
    app.stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()

    assert sorted(pb.ObservationBatch.FromString(v).tile_id for v in outputs) == [
        "31UFS",
        "31UFT",
        "31UGS",
    ]
    reasons = sorted(letter.error for letter in letters)
    assert reasons[1] == "tile BAD has no band asset"
    assert reasons[0].startswith("not a revisit.events.v1.SceneDiscovered")
    assert all(letter.stage == "preprocess" and letter.value for letter in letters)

    # Every record is committed: a restarted consumer of the group gets nothing again.
    check = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=stage.group_id)
    partitions = [TopicPartition(source, p) for p in (0, 1)]
    committed = sum(check.committed(tp) or 0 for tp in partitions)
    ends = sum(check.end_offsets(partitions).values())
    check.close()
    assert committed == ends == 5
    if grouped:  # the first poll holds several events, among them BAD: one by one then
        assert groups and max(groups) > 1


def test_lag_is_read_from_the_broker_and_falls_to_zero_once_committed(
    stack: StackConfig, topics: tuple[str, str]
) -> None:
    source, _ = topics
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    for i in range(7):
        producer.send(source, key=f"k{i}".encode(), value=scene(f"T{i}"), partition=i % 2)
    producer.flush()
    stage_name = f"lag-{uuid.uuid4().hex[:8]}"
    offsets = offsets_reader({"bootstrap_servers": stack.kafka_bootstrap}, f"revisit-{stage_name}")

    def lag_becomes(expected: dict[int, int]) -> None:
        deadline, lag = time.monotonic() + 60, None
        while lag != expected:
            assert time.monotonic() < deadline, lag
            try:
                lag = group_lag(offsets, source)
            except (
                CoordinatorNotAvailableError,
                NotCoordinatorError,
            ):  # a fresh broker makes its offsets topic
                time.sleep(0.5)

    lag_becomes({0: 4, 1: 3})  # nothing committed

    registry = CollectorRegistry()
    app = ServiceApp("lagtest", ServiceSettings(kafka_bootstrap=stack.kafka_bootstrap), registry)
    seen = threading.Event()

    def count(event: pb.SceneDiscovered) -> list[Output]:
        if event.tile_id == "T6":
            seen.set()
        return []

    thread = run(app, Stage(stage_name, source, pb.SceneDiscovered, count))
    assert seen.wait(60)
    lag_becomes({0: 0, 1: 0})
    deadline = time.monotonic() + 60
    # the service's own monitor publishes the same, per partition
    while (
        registry.get_sample_value(
            "revisit_lagtest_consumer_lag_messages", {"topic": source, "partition": "1"}
        )
        != 0
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    app.stop.set()
    thread.join(30)
    offsets.close()
