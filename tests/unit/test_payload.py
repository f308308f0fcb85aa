"""The local payload store: deterministic keys, checksums, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from revisit_common.errors import PoisonError, TransientError
from revisit_common.payload import LocalPayloadStore


def test_round_trip_and_same_key_same_ref(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    array = np.arange(2 * 10 * 32 * 32, dtype=np.float32).reshape(2, 10, 32, 32)
    ref = store.put_array("lcz/aoi/31UFS/scene/patches", array)
    assert list(ref.shape) == [2, 10, 32, 32] and ref.dtype == "float32"
    np.testing.assert_array_equal(store.get_array(ref), array)
    assert store.put_array("lcz/aoi/31UFS/scene/patches", array) == ref


def test_changed_payload_is_detected(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    ref = store.put_array("a", np.zeros(4, np.float32))
    store.put_array("a", np.ones(4, np.float32))
    with pytest.raises(PoisonError, match="does not match its sha256"):
        store.get_array(ref)


def test_missing_payload_and_escaping_key_are_poison(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
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
        LocalPayloadStore(blocked).put_array("a/b", np.zeros(1))
