"""Topics, event headers and decoding: one place that knows how events travel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError

SCENES_TOPIC = "eo.scenes.v1"
OBSERVATIONS_TOPIC = "eo.observations.v1"
PREDICTIONS_TOPIC = "eo.predictions.v1"

#: The revision of the v1 schemas this code writes and understands (`Header.schema_revision`).
SCHEMA_REVISION = 1

#: Values of `SceneDiscovered.sensor`.
SENTINEL2 = "sentinel-2"
SENTINEL1 = "sentinel-1"
#: The Sentinel-2 scene classification layer, a `BandAsset` of its own in scene events.
SCL_BAND = "SCL"


#: The indicators each kind of AOI gets from a Sentinel-2 pass: the catalog expects one
#: `scene_processing` record each, the inference service predicts them, the store
#: completes each record when that indicator's predictions are committed.
INDICATORS_OF_KIND = {
    "city": ("lcz",),
    "parcels": ("crop_type", "parcel_biophysics"),
    "region": ("land_cover", "biophysics"),
}
#: ... and from a Sentinel-1 pass: the S1+S2 crop type of the parcels it observed
#: (which a Sentinel-2 pass revises too).
S1_INDICATORS_OF_KIND = {"parcels": ("crop_type_s1s2",)}


def indicators_of(aoi: pb.Aoi, sensor: str) -> tuple[str, ...]:
    """The indicators a pass of `sensor` gives `aoi`: those of its kind, and a Sentinel-2
    pass also those of the Sentinel-1 passes where the AOI is watched with both."""
    if sensor == SENTINEL1 and aoi.kind in S1_INDICATORS_OF_KIND:
        return S1_INDICATORS_OF_KIND[aoi.kind]
    optical = INDICATORS_OF_KIND.get(aoi.kind, (aoi.kind,))
    if SENTINEL1 in aoi.sensors:
        return optical + S1_INDICATORS_OF_KIND.get(aoi.kind, ())
    return optical


def partition_key(aoi: pb.Aoi, tile_id: str) -> bytes:
    """The Kafka key of a scene's events at every stage. Passes over one tile share a
    partition, so they are handled in order; a "parcels" AOI is keyed by its name
    instead, so that its Sentinel-1 passes (placed by orbit, not by tile) and its
    Sentinel-2 passes are handled in one order: the S1+S2 model of a radar pass reads
    the optical passes published before it."""
    return f"aoi:{aoi.name}".encode() if aoi.kind == "parcels" else tile_id.encode()


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of the stage that consumes ``topic``."""
    return f"{topic}.dlq"


M = TypeVar("M", bound=Message)


def decode(message_type: type[M], value: bytes | None) -> M:
    """Parse one Kafka value; undecodable or header-less bytes are poison."""
    if not value:
        raise PoisonError(f"empty message: expected {message_type.DESCRIPTOR.full_name}")
    event = message_type()
    try:
        event.ParseFromString(value)
    except DecodeError as exc:
        raise PoisonError(f"not a {message_type.DESCRIPTOR.full_name}: {exc}") from exc
    header = getattr(event, "header", None)
    if header is not None and not header.event_id:
        raise PoisonError(
            f"{message_type.DESCRIPTOR.full_name} without header.event_id: wrong topic or "
            "event version?"
        )
    if header is not None and header.schema_revision > SCHEMA_REVISION:
        raise PoisonError(
            f"{message_type.DESCRIPTOR.full_name} of schema revision {header.schema_revision}, "
            f"from {header.producer or 'an unknown producer'}: this service reads revisions "
            f"up to {SCHEMA_REVISION}; upgrade it, then replay the DLQ"
        )
    return event


def timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def stage_time(header: pb.Header, stage: str) -> datetime | None:
    """When `stage` produced the event this header's chain went through (the header's
    own producer included); None if it did not."""
    if header.producer == stage and header.HasField("produced_at"):
        return to_datetime(header.produced_at)
    for mark in reversed(header.stages):
        if mark.stage == stage and mark.HasField("at"):
            return to_datetime(mark.at)
    return None


def now() -> datetime:
    return datetime.now(UTC)


def root_header(
    producer: str, scene_id: str, acquired_at: datetime, discovered_at: datetime
) -> pb.Header:
    """The header of the first event of a scene's chain: it starts a new trace."""
    return pb.Header(
        event_id=str(uuid.uuid4()),
        trace_id=uuid.uuid4().hex,
        producer=producer,
        produced_at=timestamp(now()),
        scene_id=scene_id,
        acquired_at=timestamp(acquired_at),
        discovered_at=timestamp(discovered_at),
        schema_revision=SCHEMA_REVISION,
    )


def derived_header(producer: str, parent: pb.Header) -> pb.Header:
    """The header of an event derived from ``parent``: same trace and scene, new id; the
    parent's producer and time join ``stages``."""
    header = pb.Header()
    header.CopyFrom(parent)
    header.stages.add(stage=parent.producer).at.CopyFrom(parent.produced_at)
    header.event_id = str(uuid.uuid4())
    header.producer = producer
    header.produced_at.CopyFrom(timestamp(now()))
    header.schema_revision = SCHEMA_REVISION
    return header
