"""`revisit dlq list|replay` on the real broker: letters listed, one replayed to its source
topic with its key and value, and not a second time unless forced."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from revisit_cli.__main__ import main
from revisit_cli.dlq import REPLAYED_FROM_HEADER
from revisit_cli.stack import StackConfig, TopicSpec, ensure_topics
from revisit_common import events_pb2 as pb
from revisit_common.events import dlq_topic, timestamp

pytestmark = pytest.mark.integration


def letter(stage: str, source: str, offset: int, error_type: str, error: str) -> bytes:
    return pb.DeadLetter(
        stage=stage,
        source_topic=source,
        partition=1,
        offset=offset,
        key=f"key-{offset}".encode(),
        value=f"value-{offset}".encode() * 3,
        error_type=error_type,
        error=error,
        failed_at=timestamp(datetime(2024, 5, 1, 12, offset, tzinfo=UTC)),
    ).SerializeToString()


def records(bootstrap: str, topic: str) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """Every record of `topic` now: key, value, headers."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    consumer.seek_to_beginning(*partitions)
    found = []
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000).values():
            found += [(r.key, r.value, dict(r.headers)) for r in batch]
    consumer.close()
    return found


def dlq(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["dlq", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_replay_once(stack: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = stack.kafka_bootstrap
    source = f"test.{uuid.uuid4().hex[:8]}.scenes"
    dead = dlq_topic(source)
    ensure_topics(bootstrap, [TopicSpec(source, 2), TopicSpec(dead, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value in (
        letter("preprocess", source, 10, "PoisonError", "scene s1 has no B02 asset\ndetail"),
        letter("preprocess", source, 11, "KeyError", "'B8A'\nTraceback ..."),
        letter("catalog", "earth-search", 0, "PoisonError", "item x: no geometry"),
    ):
        producer.send(dead, value=value)
    producer.send(dead, value=b"\x08 not a letter")
    producer.flush()
    producer.close()
    where = ["--topic", dead, "--bootstrap", bootstrap]

    code, out, err = dlq(capsys, "list", *where)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        f"{dead}[0]@0  2024-05-01T12:10:00Z  preprocess  {source}[1]@10  PoisonError  "
        "scene s1 has no B02 asset"
    )
    assert lines[2].endswith("catalog  earth-search  PoisonError  item x: no geometry")
    assert lines[3] == f"3 letters in {dead}"
    assert f"{dead}[0]@3 is not a DeadLetter" in err

    code, out, _ = dlq(capsys, "list", *where, "--json", "--error-type", "KeyError")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["dlq_offset"] == 1 and row["error"] == "'B8A'\nTraceback ..."
    assert row["key"] == "key-11" and row["replayed"] is False and row["replayable"]

    code, out, _ = dlq(capsys, "replay", *where, "--offset", "1", "--dry-run")
    assert code == 0 and out.splitlines()[-1] == "would replay 1 letter"
    assert records(bootstrap, source) == []

    code, out, err = dlq(capsys, "replay", *where, "--offset", "1")
    assert code == 0, err
    assert out.splitlines()[-1] == "replayed 1 letter"
    assert records(bootstrap, source) == [
        (b"key-11", b"value-11" * 3, {REPLAYED_FROM_HEADER: f"{dead}[0]@1".encode()})
    ]

    code, out, _ = dlq(capsys, "replay", *where, "--offset", "1")
    assert code == 0
    assert out.splitlines()[-1] == (
        "replayed 0 letters; 1 replayed before left out (--force sends them again)"
    )
    assert len(records(bootstrap, source)) == 1

    code, out, _ = dlq(capsys, "replay", *where, "--all")
    assert code == 0
    assert out.splitlines()[-1].startswith(
        "replayed 1 letter; 1 replayed before left out (--force sends them again); "
        "1 from a catalog source left out"
    )
    assert sorted(k for k, _, _ in records(bootstrap, source)) == [b"key-10", b"key-11"]

    code, out, _ = dlq(capsys, "list", *where, "--stage", "preprocess")
    assert [line.endswith("[replayed]") for line in out.splitlines()[:2]] == [True, True]

    code, out, _ = dlq(capsys, "replay", *where, "--offset", "1", "--force")
    assert code == 0 and out.splitlines()[-1] == "replayed 1 letter"
    assert len(records(bootstrap, source)) == 3


def test_errors_are_one_line(
    stack: StackConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVISIT_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    code, out, err = dlq(capsys, "list", "--topic", "no.such.topic.dlq")
    assert code == 2 and out == ""
    assert err.startswith(f"error: no topic 'no.such.topic.dlq' on {stack.kafka_bootstrap}")
    assert "Traceback" not in err
