"""`revisit dlq list|replay`: inspect the dead-letter topics and, after a fix, send their
records back to the topic they came from.

Every stage writes what it can never process to `<its input topic>.dlq` as a
`DeadLetter` (the original key and value, the error and where the record came from).
`list` reads the DLQ topics from their beginning and commits nothing. `replay`
re-publishes the original key and value of the selected letters to their source topic,
with a `revisit-replayed-from` header naming the letter.

What was replayed is recorded in the Kafka consumer group `revisit-dlq-replay`, per DLQ
partition: the committed offset says that every letter before it was replayed, and the
commit's metadata lists the replayed offsets after it (`5-7,9`). A letter recorded there
is not replayed again unless `--force` (also spelt `--from-beginning`) is given. The
record is written after the broker has acknowledged the replayed records: a replay
interrupted in between sends them again, which the idempotent stages absorb. Should the
metadata outgrow what a broker keeps (`offset.metadata.max.bytes`, 4 KiB by default:
some 250 separate runs of replayed offsets), the oldest gaps between runs are counted as
replayed too.

Letters the catalog wrote about STAC items it could not map come from a catalog source,
not from a Kafka topic: they are listed but not replayed (fix the mapping, then search
that period again with `revisit catalog backfill`). Nor are letters whose value had to
be cut to fit the event size limit (`value_cut_from`): their original is still in the
source topic, at the position the letter names, until that topic's retention.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from revisit_cli.stack import StackConfig, command_kafka_bootstrap, load_topics
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import decode, to_datetime

#: The consumer group whose commits record the replayed letters.
REPLAY_GROUP = "revisit-dlq-replay"
#: The header of a replayed record: the letter it came from (`topic[partition]@offset`).
REPLAYED_FROM_HEADER = "revisit-replayed-from"
DLQ_SUFFIX = ".dlq"
#: Longest metadata string written with a commit (brokers keep 4096 bytes by default).
METADATA_LIMIT = 3000
TIMEOUT_MS = 10_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class DlqError(Exception):
    """A command that cannot be done as asked: no broker, no such topic, bad selection."""


@dataclass(frozen=True)
class Letter:
    """One record of a DLQ topic, decoded, and where it sits."""

    topic: str
    partition: int
    offset: int
    letter: pb.DeadLetter

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def failed_at(self) -> datetime | None:
        return to_datetime(self.letter.failed_at) if self.letter.HasField("failed_at") else None

    @property
    def source(self) -> str:
        """Where the original record was: `topic[partition]@offset`, or the catalog
        source of an item."""
        if self.replay_topic is None:
            return self.letter.source_topic
        return f"{self.letter.source_topic}[{self.letter.partition}]@{self.letter.offset}"

    @property
    def replay_topic(self) -> str | None:
        """The topic the letter's record is replayed to: the one this DLQ is the dead-letter
        topic of, when the record came from there (None: not a Kafka record)."""
        source = self.letter.source_topic
        return source if source and self.topic == source + DLQ_SUFFIX else None

    def line(self, replayed: bool = False) -> str:
        when = self.failed_at
        error = self.letter.error.strip().splitlines()[0] if self.letter.error.strip() else ""
        return "  ".join(
            [
                self.position,
                f"{when:%Y-%m-%dT%H:%M:%SZ}" if when else "-",
                self.letter.stage or "-",
                self.source or "-",
                self.letter.error_type or "-",
                error + (" [replayed]" if replayed else ""),
            ]
        )

    def as_json(self, replayed: bool = False) -> dict[str, Any]:
        when = self.failed_at
        return {
            "dlq_topic": self.topic,
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "failed_at": when.isoformat() if when else None,
            "stage": self.letter.stage,
            "source_topic": self.letter.source_topic,
            "source_partition": self.letter.partition,
            "source_offset": self.letter.offset,
            "replayable": self.replay_topic is not None and not self.letter.value_cut_from,
            "error_type": self.letter.error_type,
            "error": self.letter.error,
            "key": self.letter.key.decode("utf-8", "backslashreplace"),
            "value_bytes": len(self.letter.value),
            "value_cut_from": self.letter.value_cut_from or None,
            "replayed": replayed,
        }


@dataclass(frozen=True)
class Filters:
    """Which letters a command is about (every given criterion must hold)."""

    stage: str | None = None
    error_type: str | None = None
    since: datetime | None = None

    def matches(self, letter: Letter) -> bool:
        if self.stage is not None and letter.letter.stage != self.stage:
            return False
        if self.error_type is not None and letter.letter.error_type != self.error_type:
            return False
        if self.since is not None:
            when = letter.failed_at
            if when is None or when < self.since:
                return False
        return True


@dataclass(frozen=True)
class OffsetSelector:
    """`--offset N` (that offset in any partition) or `--offset P:N`."""

    offset: int
    partition: int | None = None

    def matches(self, letter: Letter) -> bool:
        return letter.offset == self.offset and self.partition in (None, letter.partition)


def parse_offset(text: str) -> OffsetSelector:
    partition, sep, offset = text.rpartition(":")
    try:
        selector = OffsetSelector(int(offset), int(partition) if sep else None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset (N or PARTITION:N)") from exc
    if selector.offset < 0 or (selector.partition or 0) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: offsets and partitions are >= 0")
    return selector


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date or time (UTC unless it says otherwise), or a duration back from now:
    `30m`, `6h`, `2d`, `1w`."""
    match = _DURATION.match(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a date or time (2024-05-01, 2024-05-01T12:00) nor a "
            "duration (30m, 6h, 2d, 1w)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def select(
    letters: Iterable[Letter],
    filters: Filters,
    offsets: Sequence[OffsetSelector] = (),
) -> list[Letter]:
    """The letters that pass the filters and, when offsets are given, sit at one of them."""
    return [
        letter
        for letter in letters
        if filters.matches(letter) and (not offsets or any(o.matches(letter) for o in offsets))
    ]


@dataclass
class Replayed:
    """The replayed letters of one DLQ partition: every offset below `below`, and the
    inclusive `runs` of offsets above it."""

    below: int = 0
    runs: list[tuple[int, int]] = field(default_factory=list)

    def __contains__(self, offset: int) -> bool:
        return offset < self.below or any(lo <= offset <= hi for lo, hi in self.runs)

    def add(self, offsets: Iterable[int]) -> None:
        runs = sorted([*self.runs, *((o, o) for o in offsets if o >= self.below)])
        merged: list[tuple[int, int]] = []
        for lo, hi in runs:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        while merged and merged[0][0] <= self.below:
            self.below = max(self.below, merged.pop(0)[1] + 1)
        size, drop = len(self._metadata(merged)), 0
        while size > METADATA_LIMIT:  # the oldest runs go first
            size -= len(self._metadata(merged[drop : drop + 1])) + 1
            drop += 1
        if drop:
            self.below = merged[drop - 1][1] + 1
        self.runs = merged[drop:]

    def metadata(self) -> str:
        return self._metadata(self.runs)

    @staticmethod
    def _metadata(runs: Sequence[tuple[int, int]]) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)

    @classmethod
    def parse(cls, committed: int | None, metadata: str | None) -> Replayed:
        """From a commit of the group (None: nothing replayed yet); metadata that is not
        ours is ignored."""
        replayed = cls(below=max(committed or 0, 0))
        runs = []
        for part in (metadata or "").split(","):
            lo, _, hi = part.strip().partition("-")
            if lo.isdigit() and (not hi or hi.isdigit()):
                runs.append((int(lo), int(hi or lo)))
        replayed.runs = sorted(runs)
        replayed.add(())
        return replayed


@dataclass
class Plan:
    """What a replay does with the selected letters."""

    send: list[Letter] = field(default_factory=list)
    already: list[Letter] = field(default_factory=list)  # replayed before (no --force)
    not_kafka: list[Letter] = field(default_factory=list)  # from a catalog source
    cut: list[Letter] = field(default_factory=list)  # value cut to fit the DLQ


def plan_replay(
    selected: Iterable[Letter], replayed: dict[tuple[str, int], Replayed], force: bool
) -> Plan:
    plan = Plan()
    for letter in selected:
        if letter.replay_topic is None:
            plan.not_kafka.append(letter)
        elif letter.letter.value_cut_from:
            plan.cut.append(letter)
        elif not force and letter.offset in replayed.get(
            (letter.topic, letter.partition), Replayed()
        ):
            plan.already.append(letter)
        else:
            plan.send.append(letter)
    return plan


def summary(plan: Plan, dry_run: bool) -> str:
    verb = "would replay" if dry_run else "replayed"
    parts = [f"{verb} {len(plan.send)} letter{'' if len(plan.send) == 1 else 's'}"]
    if plan.already:
        parts.append(f"{len(plan.already)} replayed before left out (--force sends them again)")
    if plan.not_kafka:
        parts.append(
            f"{len(plan.not_kafka)} from a catalog source left out (fix the mapping, then "
            "`revisit catalog backfill` over that period)"
        )
    if plan.cut:
        parts.append(
            f"{len(plan.cut)} cut to fit the DLQ left out (their originals stay in the "
            "source topic until its retention)"
        )
    return "; ".join(parts)


# -- Kafka -----------------------------------------------------------------------------


def configured_dlq_topics() -> list[str]:
    """The `*.dlq` topics of the stack's topics file."""
    path = StackConfig().kafka_topics_file
    try:
        specs = load_topics(path)
    except OSError as exc:
        raise DlqError(f"cannot read the topics file {path}: {exc} (or name --topic)") from exc
    return [s.name for s in specs if s.name.endswith(DLQ_SUFFIX)]


def _kafka_errors() -> tuple[type[BaseException], ...]:
    from kafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]

    return (KafkaError, OSError)


def open_consumer(bootstrap: str) -> Any:
    """A consumer of the replay group that never commits by itself."""
    from kafka import KafkaConsumer  # type: ignore[import-untyped, unused-ignore]

    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=REPLAY_GROUP,
            client_id="revisit-dlq",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=TIMEOUT_MS + 1000,
        )
    except _kafka_errors() as exc:
        raise DlqError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc


def read_letters(consumer: Any, topics: Sequence[str], bootstrap: str) -> list[Letter]:
    """Every letter of `topics` present now, from the beginning; nothing is committed.
    Records that are not `DeadLetter`s are left out with a warning."""
    from kafka import TopicPartition  # type: ignore[import-untyped, unused-ignore]

    try:
        existing = consumer.topics()
    except _kafka_errors() as exc:
        raise DlqError(f"cannot list the topics of {bootstrap}: {exc}") from exc
    missing = [t for t in topics if t not in existing]
    if missing:
        known = sorted(t for t in existing if t.endswith(DLQ_SUFFIX))
        raise DlqError(
            f"no topic {', '.join(map(repr, missing))} on {bootstrap} "
            f"(DLQ topics there: {', '.join(known) or 'none'})"
        )
    partitions = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
    ]
    letters: list[Letter] = []
    try:
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while pending:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    letter = _letter(record)
                    if letter is not None:
                        letters.append(letter)
                deadline = time.monotonic() + TIMEOUT_MS / 1000
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
            if pending and time.monotonic() > deadline:
                raise DlqError(
                    f"reading {', '.join(sorted({tp.topic for tp in pending}))} from "
                    f"{bootstrap} stalled for {TIMEOUT_MS / 1000:.0f} s"
                )
    except _kafka_errors() as exc:
        raise DlqError(f"reading the DLQ from {bootstrap} failed: {exc}") from exc
    return sorted(letters, key=lambda x: (x.topic, x.partition, x.offset))


def _letter(record: Any) -> Letter | None:
    try:
        letter = decode(pb.DeadLetter, record.value)
    except PoisonError as exc:
        print(
            f"warning: {record.topic}[{record.partition}]@{record.offset} is not a "
            f"DeadLetter, left out: {exc}",
            file=sys.stderr,
        )
        return None
    return Letter(record.topic, record.partition, record.offset, letter)


def read_replayed(consumer: Any, letters: Iterable[Letter]) -> dict[tuple[str, int], Replayed]:
    """What the replay group recorded, for the DLQ partitions of `letters`."""
    from kafka import TopicPartition  # type: ignore[import-untyped, unused-ignore]

    replayed = {}
    for topic, partition in sorted({(x.topic, x.partition) for x in letters}):
        try:
            committed = consumer.committed(
                TopicPartition(topic, partition), metadata=True, timeout_ms=TIMEOUT_MS
            )
        except _kafka_errors() as exc:
            raise DlqError(f"cannot read the commits of group {REPLAY_GROUP}: {exc}") from exc
        replayed[(topic, partition)] = (
            Replayed()
            if committed is None
            else Replayed.parse(committed.offset, committed.metadata)
        )
    return replayed


def publish(bootstrap: str, letters: Sequence[Letter]) -> None:
    """Send the letters' original records to their source topics; returns once the broker
    has acknowledged every one."""
    from kafka import KafkaProducer  # type: ignore[import-untyped, unused-ignore]

    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", client_id="revisit-dlq", retries=5
        )
    except _kafka_errors() as exc:
        raise DlqError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc
    try:
        futures = [
            producer.send(
                letter.replay_topic,
                key=letter.letter.key or None,
                value=letter.letter.value,
                headers=[(REPLAYED_FROM_HEADER, letter.position.encode())],
            )
            for letter in letters
        ]
        producer.flush(timeout=TIMEOUT_MS / 1000)
        for letter, future in zip(letters, futures, strict=True):
            future.get(timeout=TIMEOUT_MS / 1000)
            print(
                f"replayed {letter.position} to {letter.replay_topic} "
                f"(key {letter.letter.key.decode('utf-8', 'backslashreplace')!r}, "
                f"{len(letter.letter.value)} bytes)"
            )
    except _kafka_errors() as exc:
        raise DlqError(
            f"replaying to {bootstrap} failed: {exc}; nothing was recorded as replayed, "
            "so the same command sends them again"
        ) from exc
    finally:
        producer.close(timeout=5)


def record_replayed(
    consumer: Any, replayed: dict[tuple[str, int], Replayed], sent: Iterable[Letter]
) -> None:
    from kafka import TopicPartition  # type: ignore[import-untyped, unused-ignore]
    from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped, unused-ignore]

    offsets: dict[tuple[str, int], list[int]] = {}
    for letter in sent:
        offsets.setdefault((letter.topic, letter.partition), []).append(letter.offset)
    commits = {}
    for (topic, partition), numbers in offsets.items():
        record = replayed.setdefault((topic, partition), Replayed())
        record.add(numbers)
        commits[TopicPartition(topic, partition)] = OffsetAndMetadata(
            record.below, record.metadata(), -1
        )
    try:
        consumer.commit(commits)
    except _kafka_errors() as exc:
        raise DlqError(
            f"replayed, but recording it in group {REPLAY_GROUP} failed: {exc}; the same "
            "command would send them again"
        ) from exc


# -- commands --------------------------------------------------------------------------


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(stage=args.stage, error_type=args.error_type, since=args.since)


def cmd_list(args: argparse.Namespace) -> int:
    bootstrap = command_kafka_bootstrap(args.bootstrap)
    topics = args.topic or configured_dlq_topics()
    consumer = open_consumer(bootstrap)
    try:
        letters = select(read_letters(consumer, topics, bootstrap), _filters(args))
        replayed = read_replayed(consumer, letters)
    finally:
        consumer.close(autocommit=False)
    for letter in letters:
        done = letter.offset in replayed.get((letter.topic, letter.partition), Replayed())
        print(json.dumps(letter.as_json(done)) if args.json else letter.line(done))
    if not args.json:
        print(f"{len(letters)} letter{'' if len(letters) == 1 else 's'} in {', '.join(topics)}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if not args.offset and not args.all:
        raise DlqError("say which letters: --offset N (repeatable) or --all (with filters)")
    if args.offset and args.all:
        raise DlqError("--offset and --all exclude each other")
    bootstrap = command_kafka_bootstrap(args.bootstrap)
    topics = args.topic or configured_dlq_topics()
    if args.offset and len(topics) != 1:
        raise DlqError("--offset needs one --topic: offsets are per DLQ topic")
    consumer = open_consumer(bootstrap)
    try:
        letters = read_letters(consumer, topics, bootstrap)
        selected = select(letters, _filters(args), args.offset)
        replayed = read_replayed(consumer, selected)
        plan = plan_replay(selected, replayed, args.force)
        for letter in plan.already:
            print(f"left out {letter.position}: replayed before (--force sends it again)")
        for letter in plan.not_kafka:
            print(f"left out {letter.position}: from {letter.source}, not a Kafka record")
        for letter in plan.cut:
            print(
                f"left out {letter.position}: only {len(letter.letter.value)} of its "
                f"{letter.letter.value_cut_from} bytes were kept; the original is {letter.source}"
            )
        if args.dry_run:
            for letter in plan.send:
                print(f"would replay {letter.position} to {letter.replay_topic}")
        elif plan.send:
            publish(bootstrap, plan.send)
            record_replayed(consumer, replayed, plan.send)
    finally:
        consumer.close(autocommit=False)
    print(summary(plan, args.dry_run))
    return 0


def run(args: argparse.Namespace) -> int:
    # Failures are reported in one line each below; kafka-python would log every retry.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        return int(args.dlq_func(args))
    except DlqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def add_parsers(sub: Any) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="inspect the dead-letter topics and replay their records after a fix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--topic",
        action="append",
        help="a DLQ topic, repeatable (default: every *.dlq topic of the topics file)",
    )
    common.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: REVISIT_KAFKA_BOOTSTRAP, else the embedded "
        "stack's broker)",
    )
    common.add_argument("--stage", help="only letters of this stage (catalog, preprocess...)")
    common.add_argument("--error-type", help="only letters of this error type (PoisonError...)")
    common.add_argument(
        "--since",
        type=parse_since,
        help="only letters written since: an ISO date or time (UTC), or 30m, 6h, 2d, 1w",
    )

    listing = actions.add_parser(
        "list", parents=[common], help="one line per letter, oldest first; commits nothing"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=run, dlq_func=cmd_list)

    replay = actions.add_parser(
        "replay",
        parents=[common],
        help="send letters' original records back to their source topic",
    )
    replay.add_argument(
        "--offset",
        type=parse_offset,
        action="append",
        help="the letter at this DLQ offset (N, or PARTITION:N), repeatable; needs one --topic",
    )
    replay.add_argument("--all", action="store_true", help="every letter that passes the filters")
    replay.add_argument(
        "--force",
        "--from-beginning",
        dest="force",
        action="store_true",
        help=f"replay letters that group {REPLAY_GROUP} records as replayed too",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be replayed; send nothing"
    )
    replay.set_defaults(func=run, dlq_func=cmd_replay)
