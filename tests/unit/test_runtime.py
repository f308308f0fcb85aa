"""The shared runtime's error policy, without Kafka: poison → DLQ record, transient →
retried, unexpected → DLQ with the traceback; metrics never use ids as labels."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError, TransientError
from revisit_common.events import now, root_header
from revisit_common.runtime import Output, ServiceApp, Stage
from revisit_common.settings import ServiceSettings


@dataclass
class Record:
    value: bytes
    topic: str = "eo.scenes.v1"
    partition: int = 2
    offset: int = 41
    key: bytes = b"31UFS"


@pytest.fixture
def app() -> Iterator[ServiceApp]:
    settings = ServiceSettings(retry_initial_s=0.01, retry_max_s=0.02)
    service = ServiceApp("preprocess", settings, CollectorRegistry())
    yield service
    service.http.shutdown()


def scene() -> bytes:
    return pb.SceneDiscovered(
        header=root_header("catalog", "S2B_31UFS_20210601", now(), now()), tile_id="31UFS"
    ).SerializeToString()


def stage(process) -> Stage[pb.SceneDiscovered]:  # type: ignore[no-untyped-def]
    return Stage("preprocess", "eo.scenes.v1", pb.SceneDiscovered, process)


def test_outputs_of_a_good_message(app: ServiceApp) -> None:
    out = Output("eo.observations.v1", b"31UFS", pb.ObservationBatch(tile_id="31UFS"))
    assert app._handle(stage(lambda e: [out]), Record(scene())) == [out]


def test_poison_goes_to_the_dlq_with_reason_and_original_bytes(app: ServiceApp) -> None:
    def reject(event: pb.SceneDiscovered) -> list[Output]:
        raise PoisonError("scene has no B04 asset")

    original = scene()
    (letter,) = app._handle(stage(reject), Record(original))  # type: ignore[misc]
    assert letter.topic == "eo.scenes.v1.dlq" and letter.key == b"31UFS"
    assert isinstance(letter.event, pb.DeadLetter)
    assert letter.event.error == "scene has no B04 asset"
    assert (letter.event.partition, letter.event.offset) == (2, 41)
    assert letter.event.value == original


def test_undecodable_bytes_go_to_the_dlq(app: ServiceApp) -> None:
    (letter,) = app._handle(stage(lambda e: []), Record(b"\x08\x96\x01garbage"))  # type: ignore[misc]
    assert isinstance(letter.event, pb.DeadLetter) and letter.event.error_type == "PoisonError"


def test_unexpected_error_goes_to_the_dlq_with_traceback(app: ServiceApp) -> None:
    def bug(event: pb.SceneDiscovered) -> list[Output]:
        raise ZeroDivisionError("division by zero")

    (letter,) = app._handle(stage(bug), Record(scene()))  # type: ignore[misc]
    assert isinstance(letter.event, pb.DeadLetter)
    assert letter.event.error_type == "ZeroDivisionError" and "Traceback" in letter.event.error


def test_transient_failures_are_retried_until_success(app: ServiceApp) -> None:
    attempts = []

    def flaky(event: pb.SceneDiscovered) -> list[Output]:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientError("Triton unavailable")
        return []

    assert app._handle(stage(flaky), Record(scene())) == []
    assert len(attempts) == 3
    failed = app.metrics.registry.get_sample_value(
        "revisit_preprocess_messages_failed_total", {"kind": "transient"}
    )
    assert failed == 2


def test_stop_during_transient_retries_leaves_the_message_unprocessed(app: ServiceApp) -> None:
    def down(event: pb.SceneDiscovered) -> list[Output]:
        app.stop.set()
        raise TransientError("database unavailable")

    assert app._handle(stage(down), Record(scene())) is None


def test_health_and_metrics_endpoints(app: ServiceApp) -> None:
    base = f"http://127.0.0.1:{app.metrics_port}"
    with urllib.request.urlopen(f"{base}/healthz") as response:
        assert json.loads(response.read()) == {"ok": True, "state": "starting"}
    with urllib.request.urlopen(f"{base}/metrics") as response:
        assert b"revisit_preprocess_messages_consumed_total" in response.read()


def test_metric_labels_are_from_small_fixed_sets(app: ServiceApp) -> None:
    allowed = {"topic", "kind", "le"}  # le: histogram buckets
    for metric in app.metrics.registry.collect():
        for sample in metric.samples:
            assert set(sample.labels) <= allowed, (metric.name, sample.labels)


def test_triton_errors_a_restarting_server_gives_are_transient() -> None:
    from tritonclient.utils import InferenceServerException

    from revisit_common.errors import PoisonError, TransientError
    from revisit_inference.triton import classify

    def error(message: str, status: str) -> Exception:
        return classify(InferenceServerException(message, status), "psetae_s2")

    assert isinstance(
        error("Request for unknown model: 'psetae_s2' is not found", "StatusCode.INVALID_ARGUMENT"),
        TransientError,
    )
    assert isinstance(
        error("Request for unknown model: 'psetae_s2' has no available versions", "UNAVAILABLE"),
        TransientError,
    )
    assert isinstance(error("failed to connect to all addresses", "UNAVAILABLE"), TransientError)
    assert isinstance(
        error("unexpected shape for input 'pixels', got [1, 3]", "StatusCode.INVALID_ARGUMENT"),
        PoisonError,
    )


def test_an_output_over_the_event_limit_sends_its_input_to_the_dlq() -> None:
    settings = ServiceSettings(max_event_bytes=20_000)
    app = ServiceApp("preprocess", settings, CollectorRegistry())
    try:
        big = pb.ObservationBatch(tile_id="31UFS", notes=["x" * 30_000])
        out = Output("eo.observations.v1", b"31UFS", big)
        original = scene()
        (letter,) = app._handle(stage(lambda e: [out]), Record(original))  # type: ignore[misc]
        assert letter.topic == "eo.scenes.v1.dlq" and isinstance(letter.event, pb.DeadLetter)
        assert letter.event.error.startswith(
            "its ObservationBatch for eo.observations.v1 would be 30011 bytes, over the "
            "20000-byte event limit"
        )
        assert letter.event.value == original and not letter.event.value_cut_from
        small = Output("eo.observations.v1", b"31UFS", pb.ObservationBatch(tile_id="31UFS"))
        assert app._handle(stage(lambda e: [small]), Record(original)) == [small]
    finally:
        app.http.shutdown()


def test_a_letter_over_the_event_limit_keeps_the_start_of_the_value() -> None:
    app = ServiceApp("preprocess", ServiceSettings(max_event_bytes=20_000), CollectorRegistry())
    try:
        value = bytes(range(256)) * 100  # 25,600 bytes: not even a valid event
        (letter,) = app._handle(stage(lambda e: []), Record(value))  # type: ignore[misc]
        event = letter.event
        assert isinstance(event, pb.DeadLetter) and event.ByteSize() <= 20_000
        assert event.value_cut_from == len(value) and value.startswith(event.value)
        assert len(event.value) > 15_000
        assert "the original is eo.scenes.v1[2]@41" in event.error
    finally:
        app.http.shutdown()
