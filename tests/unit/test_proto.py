"""Generated protobuf code is current, and events round-trip with their header."""

from __future__ import annotations

import subprocess
import sys

import pytest

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import (
    SCHEMA_REVISION,
    decode,
    derived_header,
    now,
    root_header,
    stage_time,
    to_datetime,
)


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


def test_events_of_a_newer_schema_revision_are_poison() -> None:
    header = root_header("catalog", "x", now(), now())
    assert header.schema_revision == SCHEMA_REVISION == 1
    assert derived_header("preprocess", header).schema_revision == SCHEMA_REVISION
    older = pb.SceneDiscovered(header=header)
    older.header.schema_revision = 0  # written before the field existed: revision 1
    assert decode(pb.SceneDiscovered, older.SerializeToString()).header.event_id
    newer = pb.SceneDiscovered(header=header)
    newer.header.schema_revision = 2
    with pytest.raises(PoisonError, match="of schema revision 2, from catalog: this service"):
        decode(pb.SceneDiscovered, newer.SerializeToString())


def test_derived_headers_list_the_stages_before_them() -> None:
    root = root_header("catalog", "x", now(), now())
    observed = derived_header("preprocess", root)
    predicted = derived_header("inference", observed)
    assert [m.stage for m in predicted.stages] == ["catalog", "preprocess"]
    assert stage_time(predicted, "preprocess") == to_datetime(observed.produced_at)
    assert stage_time(predicted, "inference") == to_datetime(predicted.produced_at)
    assert stage_time(predicted, "catalog") == to_datetime(root.produced_at)
    assert stage_time(root, "preprocess") is None
