"""The payload store on S3: s3fs against moto's S3 server, a real HTTP server in-process on
a free port of 127.0.0.1 (no network, no AWS account)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from revisit_cli.stack import free_ports
from revisit_common.errors import PoisonError, TransientError
from revisit_common.payload import (
    PayloadStore,
    SweepResult,
    open_payload_store,
    payload_store_from_settings,
)
from revisit_common.settings import ServiceSettings

pytest.importorskip("s3fs", reason="s3fs (requirements.lock) serves s3:// URLs")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is the test S3 server")
boto3 = pytest.importorskip("boto3")

pytestmark = pytest.mark.integration

#: An S3 client that gives up at once (s3fs itself retries some errors, for < 2 s in all):
#: the tests of an unreachable store stay fast.
FAIL_FAST: dict[str, Any] = {
    "config_kwargs": {"connect_timeout": 1, "read_timeout": 2, "retries": {"max_attempts": 1}}
}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Credentials from the standard AWS_* variables, as in production; no local profile."""
    nowhere = tmp_path_factory.mktemp("aws") / "none"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "revisit-test",
        "AWS_SECRET_ACCESS_KEY": "revisit-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(nowhere),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


def start_server() -> tuple[Any, str]:
    (port,) = free_ports(1)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server, url = start_server()
    yield url
    server.stop()


def create_bucket(endpoint: str) -> str:
    name = f"revisit-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="revisit-test",
        aws_secret_access_key="revisit-test-secret",
    )
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def store(endpoint: str, registry: CollectorRegistry) -> PayloadStore:
    """The store as a service opens it: REVISIT_PAYLOAD_URL and the endpoint setting."""
    settings = ServiceSettings(
        payload_url=f"s3://{create_bucket(endpoint)}/payloads",
        payload_s3_endpoint_url=endpoint,
        payload_retention_days=7,
    )
    return payload_store_from_settings(settings, "preprocess", registry=registry)


def test_round_trip_and_same_key_same_ref(store: PayloadStore, registry: CollectorRegistry) -> None:
    assert not store.local and store.url.startswith("s3://") and store.url.endswith("/payloads")
    array = np.arange(2 * 10 * 32 * 32, dtype=np.float32).reshape(2, 10, 32, 32)
    ref = store.put_array("lcz/aoi/31UFS/scene/patches", array)
    assert list(ref.shape) == [2, 10, 32, 32] and ref.dtype == "float32"
    np.testing.assert_array_equal(store.get_array(ref), array)
    assert store.put_array("lcz/aoi/31UFS/scene/patches", array) == ref
    (found,) = store.list()
    assert found.key == "lcz/aoi/31UFS/scene/patches.npy" and found.size > array.nbytes
    assert abs(datetime.now(UTC) - found.modified) < timedelta(minutes=5)
    assert registry.get_sample_value(
        "revisit_payload_written_bytes_total", {"service": "preprocess"}
    ) == (2 * found.size)


def test_changed_payload_is_detected(store: PayloadStore) -> None:
    ref = store.put_array("a", np.zeros(4, np.float32))
    store.put_array("a", np.ones(4, np.float32))
    with pytest.raises(PoisonError, match="does not match its sha256"):
        store.get_array(ref)


def test_missing_payload_and_escaping_key_are_poison(store: PayloadStore) -> None:
    ref = store.put_array("a", np.zeros(4, np.float32))
    ref.key = "b"
    with pytest.raises(PoisonError, match="not found"):
        store.get_array(ref)
    assert store.get_bytes("b.npy") is None
    with pytest.raises(PoisonError, match="escapes"):
        store.put_array("../other-prefix/x", np.zeros(1))


def test_bytes_list_usage_and_delete(
    store: PayloadStore, registry: CollectorRegistry, endpoint: str
) -> None:
    store.put_bytes("x/one", b"1")
    store.put_bytes("x/two", b"22")
    store.put_bytes("y/three", b"333")
    assert store.get_bytes("x/two") == b"22"
    assert [(f.key, f.size) for f in store.list("x/")] == [("x/one", 1), ("x/two", 2)]
    assert [f.key for f in store.list("x/t")] == ["x/two"]
    assert store.usage() == (3, 6)
    assert registry.get_sample_value("revisit_payload_store_bytes", {"service": "preprocess"}) == 6
    store.delete("x/one")
    store.delete("x/one")
    assert store.get_bytes("x/one") is None
    assert store.usage() == (2, 5) and store.usage("y/") == (1, 3)
    # A neighbour in the same bucket is no part of the store.
    bucket = store.url.removeprefix("s3://").split("/")[0]
    neighbour = open_payload_store(
        f"s3://{bucket}/payloads-other", {"endpoint_url": endpoint}, registry=None
    )
    neighbour.put_bytes("x/four", b"4444")
    assert [f.key for f in store.list()] == ["x/two", "y/three"]
    assert store.sweep(timedelta(0), now=datetime.now(UTC) + timedelta(days=1)).deleted_objects == 2
    assert [f.key for f in neighbour.list()] == ["x/four"]


def test_sweep_with_the_clock_moved_forward(
    store: PayloadStore, registry: CollectorRegistry
) -> None:
    # S3 sets modification times itself: the sweep is told a later "now" instead.
    store.put_bytes("parcels/a", b"aa")
    store.put_bytes("lcz/b", b"bbb")
    store.put_bytes("lcz/c", b"cccc")
    now = datetime.now(UTC)
    assert store.retention == timedelta(days=7)
    assert store.sweep(timedelta(days=7), now=now) == SweepResult(0, 0, 3, 9)
    later = now + timedelta(days=8)
    assert store.sweep(timedelta(days=7), now=later, prefix="parcels/") == SweepResult(1, 2, 0, 0)
    assert [f.key for f in store.list()] == ["lcz/b", "lcz/c"]
    assert store.sweep(timedelta(days=7), now=later) == SweepResult(2, 7, 0, 0)
    assert store.list() == [] and store.usage() == (0, 0)
    assert (
        registry.get_sample_value("revisit_payload_store_objects", {"service": "preprocess"}) == 0
    )


def test_closed_endpoint_is_transient() -> None:
    (closed,) = free_ports(1)  # free: nothing listens there
    store = open_payload_store(
        "s3://revisit-nowhere/payloads",
        {"endpoint_url": f"http://127.0.0.1:{closed}", **FAIL_FAST},
        registry=None,
    )
    started = time.monotonic()
    with pytest.raises(TransientError, match="not writable at s3://revisit-nowhere/payloads"):
        store.put_array("a", np.zeros(1))
    with pytest.raises(TransientError, match="not readable"):
        store.get_bytes("a.npy")
    with pytest.raises(TransientError, match="not readable"):
        store.list()
    assert time.monotonic() - started < 15


def test_stopped_server_is_transient() -> None:
    server, url = start_server()
    try:
        store = open_payload_store(
            f"s3://{create_bucket(url)}/payloads", {"endpoint_url": url, **FAIL_FAST}
        )
        ref = store.put_array("a", np.zeros(3))
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(TransientError, match="not readable"):
        store.get_array(ref)
    with pytest.raises(TransientError, match="not writable"):
        store.put_array("b", np.zeros(3))
    with pytest.raises(TransientError):
        store.sweep(timedelta(days=1))
    assert time.monotonic() - started < 15
