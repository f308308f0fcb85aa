"""`revisit dlq`: lines, filters, selection and the record of replayed letters, without
Kafka."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from revisit_cli.__main__ import main
from revisit_cli.dlq import (
    METADATA_LIMIT,
    Filters,
    Letter,
    OffsetSelector,
    Replayed,
    parse_offset,
    parse_since,
    plan_replay,
    select,
    summary,
)
from revisit_common import events_pb2 as pb
from revisit_common.events import timestamp

DLQ = "eo.scenes.v1.dlq"


def make(
    offset: int,
    stage: str = "preprocess",
    error_type: str = "PoisonError",
    error: str = "scene s1 has no B02 asset\nTraceback (most recent call last): ...",
    minute: int = 0,
    source: str = "eo.scenes.v1",
    partition: int = 0,
) -> Letter:
    letter = pb.DeadLetter(
        stage=stage,
        source_topic=source,
        partition=2,
        offset=100 + offset,
        key=b"31UFS",
        value=b"\x0a\x03abc",
        error_type=error_type,
        error=error,
        failed_at=timestamp(datetime(2024, 5, 1, 12, minute, tzinfo=UTC)),
    )
    return Letter(DLQ, partition, offset, letter)


def test_line_shows_where_when_and_the_first_line_of_the_error() -> None:
    assert make(7).line() == (
        "eo.scenes.v1.dlq[0]@7  2024-05-01T12:00:00Z  preprocess  eo.scenes.v1[2]@107  "
        "PoisonError  scene s1 has no B02 asset"
    )
    assert make(7).line(replayed=True).endswith("no B02 asset [replayed]")
    bare = Letter(DLQ, 0, 3, pb.DeadLetter(source_topic="eo.scenes.v1"))
    assert bare.line() == "eo.scenes.v1.dlq[0]@3  -  -  eo.scenes.v1[0]@0  -  "


def test_catalog_letters_are_not_replayable() -> None:
    item = make(1, stage="catalog", source="earth-search")
    assert item.replay_topic is None
    assert item.source == "earth-search"
    assert make(1).replay_topic == "eo.scenes.v1"
    # a letter whose source is another stage's topic is not replayed here either
    assert make(1, source="eo.observations.v1").replay_topic is None


def test_json_keeps_the_whole_error() -> None:
    row = make(4).as_json()
    assert row["error"].startswith("scene s1 has no B02 asset\nTraceback")
    assert row["failed_at"] == "2024-05-01T12:00:00+00:00"
    assert (row["dlq_offset"], row["source_partition"], row["source_offset"]) == (4, 2, 104)
    assert (row["key"], row["value_bytes"], row["replayed"]) == ("31UFS", 5, False)


def test_filters_and_offsets_select() -> None:
    letters = [
        make(0, minute=1),
        make(1, stage="store", error_type="IntegrityError", minute=2),
        make(2, minute=3, partition=1),
        make(3, minute=4),
    ]
    assert [x.offset for x in select(letters, Filters(stage="preprocess"))] == [0, 2, 3]
    assert [x.offset for x in select(letters, Filters(error_type="IntegrityError"))] == [1]
    since = datetime(2024, 5, 1, 12, 3, tzinfo=UTC)
    assert [x.offset for x in select(letters, Filters(since=since))] == [2, 3]
    picked = select(letters, Filters(stage="preprocess"), [OffsetSelector(1), OffsetSelector(2)])
    assert [x.offset for x in picked] == [2]
    assert select(letters, Filters(), [OffsetSelector(2, partition=0)]) == []


def test_offsets_and_since_parse() -> None:
    assert parse_offset("12") == OffsetSelector(12)
    assert parse_offset("1:12") == OffsetSelector(12, 1)
    for bad in ("x", "-1", "1:-2", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_offset(bad)
    now = datetime(2024, 5, 10, tzinfo=UTC)
    assert parse_since("2d", now) == datetime(2024, 5, 8, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2024, 5, 9, 22, 30, tzinfo=UTC)
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="duration"):
        parse_since("yesterday")


def test_replayed_offsets_round_trip_through_a_commit() -> None:
    replayed = Replayed()
    replayed.add([5, 6, 7, 9])
    assert (replayed.below, replayed.metadata()) == (0, "5-7,9")
    assert 6 in replayed and 8 not in replayed and 0 not in replayed
    replayed.add([0, 1, 2, 3, 4])
    assert (replayed.below, replayed.metadata()) == (8, "9")
    again = Replayed.parse(replayed.below, replayed.metadata())
    assert again == replayed
    assert Replayed.parse(None, None) == Replayed()
    assert Replayed.parse(3, "someone else's") == Replayed(below=3)


def test_replayed_metadata_stays_under_the_broker_limit() -> None:
    replayed = Replayed()
    replayed.add(range(0, 20_000, 2))
    assert len(replayed.metadata()) <= METADATA_LIMIT
    assert 19_998 in replayed and 19_997 not in replayed
    assert replayed.below > 0  # the oldest gaps count as replayed


def test_plan_leaves_out_what_was_replayed_unless_forced() -> None:
    letters = [make(0), make(1), make(2, stage="catalog", source="earth-search")]
    replayed = {(DLQ, 0): Replayed(below=1)}
    plan = plan_replay(letters, replayed, force=False)
    assert [x.offset for x in plan.send] == [1]
    assert [x.offset for x in plan.already] == [0]
    assert [x.offset for x in plan.not_kafka] == [2]
    assert summary(plan, dry_run=False).startswith(
        "replayed 1 letter; 1 replayed before left out (--force sends them again); "
        "1 from a catalog source left out"
    )
    cut = make(3)
    cut.letter.value_cut_from = 2_000_000
    plan = plan_replay([cut], {}, force=True)
    assert (plan.send, plan.cut) == ([], [cut]) and not cut.as_json()["replayable"]
    assert summary(plan, dry_run=False) == (
        "replayed 0 letters; 1 cut to fit the DLQ left out (their originals stay in the "
        "source topic until its retention)"
    )
    forced = plan_replay(letters, replayed, force=True)
    assert [x.offset for x in forced.send] == [0, 1]
    assert summary(forced, dry_run=True) == (
        "would replay 2 letters; 1 from a catalog source left out (fix the mapping, then "
        "`revisit catalog backfill` over that period)"
    )


def test_replay_needs_a_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "replay", "--topic", DLQ]) == 2
    assert "--offset N (repeatable) or --all" in capsys.readouterr().err
    assert main(["dlq", "replay", "--offset", "3", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "--offset needs one --topic" in capsys.readouterr().err
