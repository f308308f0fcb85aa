"""Generated protobuf code is current, and events round-trip with their header."""

from __future__ import annotations

import subprocess
import sys

import pytest

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import decode, derived_header, now, root_header


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_derived_header_keeps_trace_and_scene() -> None:
    root = root_header("catalog", "S2A_31UFS_20210601", now(), now())
    child = derived_header("preprocess", root)
    assert (child.trace_id, child.scene_id) == (root.trace_id, root.scene_id)
    assert child.event_id != root.event_id and child.producer == "preprocess"


def test_decode_round_trip_and_poison() -> None:
    event = pb.SceneDiscovered(header=root_header("catalog", "x", now(), now()), tile_id="31UFS")
    assert decode(pb.SceneDiscovered, event.SerializeToString()).tile_id == "31UFS"
    with pytest.raises(PoisonError, match=r"not a revisit\.events\.v1\.SceneDiscovered"):
        decode(pb.SceneDiscovered, b"\xff\xff\xff")
    with pytest.raises(PoisonError, match="empty message"):
        decode(pb.SceneDiscovered, b"")
    with pytest.raises(PoisonError, match=r"without header\.event_id"):
        decode(pb.SceneDiscovered, pb.SceneDiscovered(tile_id="31UFS").SerializeToString())
