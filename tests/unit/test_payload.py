"""The payload store on a local directory: deterministic keys, checksums, clear errors,
retention and metrics (the same store on S3: tests/integration/test_payload_s3.py)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from revisit_common.errors import PoisonError, TransientError
from revisit_common.payload import (
    PayloadStore,
    SweepResult,
    open_payload_store,
    payload_store_from_settings,
)
from revisit_common.settings import ServiceSettings


def test_round_trip_and_same_key_same_ref(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path)
    array = np.arange(2 * 10 * 32 * 32, dtype=np.float32).reshape(2, 10, 32, 32)
    ref = store.put_array("lcz/aoi/31UFS/scene/patches", array)
    assert list(ref.shape) == [2, 10, 32, 32] and ref.dtype == "float32"
    np.testing.assert_array_equal(store.get_array(ref), array)
    assert store.put_array("lcz/aoi/31UFS/scene/patches", array) == ref


def test_changed_payload_is_detected(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path)
    ref = store.put_array("a", np.zeros(4, np.float32))
    store.put_array("a", np.ones(4, np.float32))
    with pytest.raises(PoisonError, match="does not match its sha256"):
        store.get_array(ref)


def test_missing_payload_and_escaping_key_are_poison(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path)
    ref = store.put_array("a", np.zeros(4, np.float32))
    ref.key = "b"
    with pytest.raises(PoisonError, match="not found"):
        store.get_array(ref)
    with pytest.raises(PoisonError, match="escapes"):
        store.put_array("../../etc/x", np.zeros(1))


def test_unwritable_store_is_transient(tmp_path: Path) -> None:
    # A file where the store's directory should be: unwritable even for root.
    blocked = tmp_path / "payloads"
    blocked.write_bytes(b"")
    with pytest.raises(TransientError, match="not writable"):
        PayloadStore(blocked).put_array("a/b", np.zeros(1))


def age(store: PayloadStore, key: str, days: float) -> None:
    """Set the modification time of `key` `days` back, as if written then."""
    when = time.time() - days * 86400
    os.utime(Path(store.root) / key, (when, when))


def test_bytes_list_and_delete(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, registry=None)
    data = b"claim check"
    assert store.put_bytes("x/one", data) == hashlib.sha256(data).hexdigest()
    store.put_bytes("x/two", b"22")
    store.put_bytes("y/three", b"333")
    assert store.get_bytes("x/one") == data
    assert store.get_bytes("x/none") is None
    listed = store.list("x/")
    assert [(found.key, found.size) for found in listed] == [("x/one", 11), ("x/two", 2)]
    assert all(abs(datetime.now(UTC) - found.modified) < timedelta(minutes=1) for found in listed)
    assert [found.key for found in store.list()] == ["x/one", "x/two", "y/three"]
    assert [found.key for found in store.list("x/t")] == ["x/two"]
    store.delete("x/one")
    store.delete("x/one")  # deleting what is gone is no error
    assert store.get_bytes("x/one") is None
    assert store.usage() == (2, 5) and store.usage("y") == (1, 3)
    assert PayloadStore(tmp_path / "nothing-yet", registry=None).list() == []
    with pytest.raises(PoisonError, match="escapes"):
        store.list("../")


def test_a_listing_can_stop_at_a_depth(tmp_path: Path) -> None:
    """A season's manifests without the arrays of every pass below them."""
    store = PayloadStore(tmp_path, registry=None)
    for key in ("s/31UFS/series.json", "s/31UFS/PASS_1/values.npy", "s/31UGS/series.json"):
        store.put_bytes(key, b"{}")
    assert [f.key for f in store.list("s/", maxdepth=2)] == [
        "s/31UFS/series.json",
        "s/31UGS/series.json",
    ]
    assert len(store.list("s/")) == 3 and store.list("s/", maxdepth=1) == []


def test_writes_leave_no_temporary_and_temporaries_are_hidden(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, registry=None)
    store.put_array("a/b", np.zeros(3))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.npy"]
    (tmp_path / "a" / ".tmp-interrupted").write_bytes(b"partial")
    assert [found.key for found in store.list()] == ["a/b.npy"]
    assert store.usage().objects == 1


def test_symlink_out_of_the_store_escapes(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(PoisonError, match="escapes"):
        PayloadStore(tmp_path / "store", registry=None).put_bytes("link/x", b"")


def test_sweep_deletes_old_objects_and_keeps_new_ones(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, registry=None)
    old = store.put_array("lcz/aoi/old-scene/patches", np.zeros((2, 3), np.float32))
    new = store.put_array("lcz/aoi/new-scene/patches", np.ones((2, 3), np.float32))
    age(store, "lcz/aoi/old-scene/patches.npy", 10)
    (tmp_path / "lcz" / ".tmp-crashed").write_bytes(b"x" * 7)
    age(store, "lcz/.tmp-crashed", 10)
    size = (tmp_path / "lcz/aoi/new-scene/patches.npy").stat().st_size

    assert store.sweep(timedelta(days=30)) == SweepResult(0, 0, 2, 2 * size)
    result = store.sweep(timedelta(days=7))
    assert result == SweepResult(2, size + 7, 1, size)
    with pytest.raises(PoisonError, match="not found"):
        store.get_array(old)
    np.testing.assert_array_equal(store.get_array(new), np.ones((2, 3), np.float32))
    assert not (tmp_path / "lcz/aoi/old-scene").exists()  # emptied directories are pruned
    assert tmp_path.is_dir() and [found.key for found in store.list()] == [
        "lcz/aoi/new-scene/patches.npy"
    ]
    # A replay rewrites the object: it is young again.
    store.put_array("lcz/aoi/new-scene/patches", np.ones((2, 3), np.float32))
    assert (
        store.sweep(timedelta(days=7), now=datetime.now(UTC) + timedelta(days=6)).kept_objects == 1
    )
    assert store.sweep(timedelta(days=7), now=datetime.now(UTC) + timedelta(days=8)) == (
        SweepResult(1, size, 0, 0)
    )
    with pytest.raises(ValueError, match="negative"):
        store.sweep(timedelta(days=-1))


def test_sweep_of_a_prefix_leaves_the_rest(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path, registry=None)
    store.put_bytes("parcels/a", b"aa")
    store.put_bytes("lcz/b", b"bbb")
    later = datetime.now(UTC) + timedelta(days=2)
    assert store.sweep(timedelta(days=1), now=later, prefix="parcels/") == SweepResult(1, 2, 0, 0)
    assert [found.key for found in store.list()] == ["lcz/b"]


def test_metrics_count_writes_and_usage(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    store = PayloadStore(tmp_path, service="preprocess", registry=registry)
    other = PayloadStore(tmp_path, service="inference", registry=registry)  # no duplicate

    def value(name: str, service: str = "preprocess") -> float | None:
        return registry.get_sample_value(name, {"service": service})

    store.put_bytes("a", b"1234")
    ref = store.put_array("b", np.zeros(8, np.uint8))
    npy = (tmp_path / "b.npy").stat().st_size
    assert value("revisit_payload_written_bytes_total") == 4 + npy
    other.put_bytes("c", b"12")
    assert value("revisit_payload_written_bytes_total", "inference") == 2
    assert value("revisit_payload_store_objects") is None  # not counted yet

    assert store.usage() == (3, 6 + npy)
    assert value("revisit_payload_store_objects") == 3
    assert value("revisit_payload_store_bytes") == 6 + npy
    store.usage("a")  # a prefix does not set the gauges of the whole store
    assert value("revisit_payload_store_objects") == 3

    age(store, "a", 2)
    store.sweep(timedelta(days=1))
    assert value("revisit_payload_store_objects") == 2
    assert value("revisit_payload_store_bytes") == 2 + npy
    np.testing.assert_array_equal(store.get_array(ref), np.zeros(8, np.uint8))


def test_stores_of_the_default_registry_share_its_metrics(tmp_path: Path) -> None:
    first, second = PayloadStore(tmp_path), PayloadStore(tmp_path / "2")
    before = REGISTRY.get_sample_value(
        "revisit_payload_written_bytes_total", {"service": "unknown"}
    )
    first.put_bytes("a", b"1")
    second.put_bytes("a", b"22")
    after = REGISTRY.get_sample_value("revisit_payload_written_bytes_total", {"service": "unknown"})
    assert after == (before or 0) + 3


def test_open_by_url_and_from_settings(tmp_path: Path) -> None:
    for url in (str(tmp_path / "plain"), f"file://{tmp_path}/url"):
        store = open_payload_store(url, registry=None)
        assert store.local and store.root == url.removeprefix("file://")
        ref = store.put_array("k", np.arange(3))
        np.testing.assert_array_equal(store.get_array(ref), np.arange(3))
    assert (tmp_path / "plain" / "k.npy").is_file() and (tmp_path / "url" / "k.npy").is_file()

    by_dir = payload_store_from_settings(
        ServiceSettings(payload_dir=tmp_path / "dir"), "inference", registry=None
    )
    assert by_dir.root == str(tmp_path / "dir") and by_dir.retention is None
    by_url = payload_store_from_settings(
        ServiceSettings(
            payload_dir=tmp_path / "dir",
            payload_url=f"file://{tmp_path}/url",
            payload_retention_days=1.5,
        ),
        "inference",
        registry=None,
    )
    assert by_url.root == str(tmp_path / "url") and by_url.retention == timedelta(hours=36)
    assert by_url.service == "inference"


def test_sweeper_applies_the_retention(tmp_path: Path) -> None:
    forever = PayloadStore(tmp_path, registry=None)
    assert forever.start_sweeper(threading.Event()) is None
    store = PayloadStore(tmp_path, registry=None, retention=timedelta(days=1))
    store.put_bytes("old", b"o")
    store.put_bytes("new", b"n")
    age(store, "old", 2)
    stop = threading.Event()
    stop.set()  # one sweep, then the thread ends
    thread = store.start_sweeper(stop, interval_s=60)
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [found.key for found in store.list()] == ["new"]
