"""Event decoding under arbitrary and damaged bytes: `decode` returns an event or raises
`PoisonError` (the record goes to the DLQ), never anything else."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import example, given
from hypothesis import strategies as st

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import decode
from tests.fuzz.conftest import budget, ran

#: The message of each topic, and the DLQ's.
EVENT_TYPES: list[type[Message]] = [
    pb.SceneDiscovered,
    pb.ObservationBatch,
    pb.PredictionBatch,
    pb.DeadLetter,
]

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: st.text(max_size=20),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=20),
}


def _fill(draw: st.DrawFn, message: Message, depth: int) -> None:
    descriptor: Descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        repeated = field.is_repeated
        count = draw(st.integers(0, 3)) if repeated else 1
        for _ in range(count):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth <= 0:
                    break
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    target = getattr(message, field.name)
                    sub = target.add() if repeated else target
                    sub.seconds = draw(st.integers(-62135596800, 253402300799))
                    sub.nanos = draw(st.integers(0, 999_999_999))
                    continue
                target = getattr(message, field.name)
                _fill(draw, target.add() if repeated else target, depth - 1)
                continue
            value = draw(_SCALARS[field.type])
            if repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)


@st.composite
def events(draw: st.DrawFn, damage: bool = False) -> tuple[type[Message], bytes]:
    """A valid encoding of one event of a random type, fields filled at random (and then
    damaged)."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event = event_type()
    _fill(draw, event, depth=2)
    if hasattr(event, "header"):  # a header with an id, as every producer writes
        event.header.event_id = draw(st.uuids()).hex
    encoded = event.SerializeToString()
    return event_type, draw(damaged(encoded)) if damage else encoded


@st.composite
def damaged(draw: st.DrawFn, encoded: bytes) -> bytes:
    """`encoded` truncated, with bytes flipped, inserted or removed, or spliced."""
    data = bytearray(encoded)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "splice"]))
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def decodes_or_poison(event_type: type[Message], value: bytes | None) -> None:
    try:
        event = decode(event_type, value)
    except PoisonError:
        return
    assert isinstance(event, event_type)


@given(st.sampled_from(EVENT_TYPES), st.one_of(st.none(), st.binary(max_size=512)))
@example(pb.SceneDiscovered, b"\x0a\x00")  # a header without an event id
@example(pb.SceneDiscovered, b"\x0a\xff\xff\xff\xff\x0f")  # a length past the end
@example(pb.DeadLetter, b"\x12\x01\xff")  # a string that is not UTF-8
@budget(3000)
def test_arbitrary_bytes(event_type: type[Message], value: bytes | None) -> None:
    ran("events: arbitrary bytes")
    decodes_or_poison(event_type, value)


@budget(1000)
@given(events(damage=True))
def test_damaged_encodings(case: tuple[type[Message], bytes]) -> None:
    ran("events: damaged valid encodings")
    decodes_or_poison(*case)


@budget(1000)
@given(events(), st.sampled_from(EVENT_TYPES))
def test_encodings_of_another_type(case: tuple[type[Message], bytes], read_as: type) -> None:
    """A record on the wrong topic, or of another version of the schema."""
    ran("events: read as another type")
    decodes_or_poison(read_as, case[1])
