"""Discovery as a plain function: items, subscriptions and what was published before in;
scene events, rejects and the count of each outcome out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import pystac
import shapely
from shapely import wkt
from shapely.geometry.base import BaseGeometry

from revisit_catalog.stac import COLLECTIONS, MappedItem, Version, map_item
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError

#: Outcomes of one item for one subscription (labels of revisit_catalog_items_total).
OUTCOMES = (
    "published",
    "reprocessed",
    "duplicate",
    "outdated",
    "too_cloudy",
    "out_of_season",
    "rejected",
)


@dataclass(frozen=True)
class Subscription:
    """An AOI the catalog watches: which collections, how cloudy at most, which season."""

    aoi: pb.Aoi
    collections: tuple[str, ...] = ("sentinel-2-l2a",)
    max_cloud_cover: float | None = None
    #: ("MM-DD", "MM-DD"), every year; a window may span the new year ("10-01", "03-31").
    season: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        for day in self.season or ():
            try:
                datetime.strptime(f"2000-{day}", "%Y-%m-%d")
            except ValueError as exc:
                raise ValueError(f"season bound {day!r} is not MM-DD") from exc

    @cached_property
    def geometry(self) -> BaseGeometry:
        """The AOI, parsed once (it is tested against every item)."""
        return wkt.loads(self.aoi.geometry_wkt)

    def in_season(self, when: datetime) -> bool:
        if self.season is None:
            return True
        day, (start, end) = f"{when:%m-%d}", self.season
        return start <= day <= end if start <= end else (day >= start or day <= end)

    def takes(self, item: MappedItem) -> bool:
        """Whether the item is one of this subscription's collections, over its AOI."""
        collection = item.event.collection
        if collection:
            wanted = collection in self.collections
        else:  # a static file's item without a collection: its sensor decides
            wanted = item.event.sensor in {COLLECTIONS.get(c) for c in self.collections}
        return wanted and item.geometry.intersects(self.geometry)


@dataclass(frozen=True)
class Published:
    """The version of an acquisition last published for an AOI."""

    scene_id: str
    version: Version
    acquired_at: datetime


@dataclass
class Discovery:
    scenes: list[pb.SceneDiscovered] = field(default_factory=list)
    rejected: list[tuple[pystac.Item, PoisonError]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


def _repeat(seen: Version, kept: Version) -> str:
    """The outcome of a version that is not newer than the one kept."""
    return "duplicate" if seen == kept else "outdated"


def newest_versions(
    items: Iterable[pystac.Item], discovered_at: datetime, source: str, result: Discovery
) -> list[tuple[MappedItem, pystac.Item]]:
    """One mapped item per acquisition, its newest version (with the item it comes from);
    the others are counted."""
    newest: dict[str, tuple[MappedItem, pystac.Item]] = {}
    for item in items:
        try:
            mapped = map_item(item, discovered_at, source)
        except PoisonError as exc:
            _reject(result, item, exc)
            continue
        held = newest.get(mapped.acquisition_key)
        if held is None:
            newest[mapped.acquisition_key] = (mapped, item)
            continue
        if mapped.version > held[0].version:
            newest[mapped.acquisition_key], held = (mapped, item), newest[mapped.acquisition_key]
        result.outcomes[_repeat(mapped.version, held[0].version)] += 1
    return list(newest.values())


def _reject(result: Discovery, item: pystac.Item, error: PoisonError) -> None:
    result.rejected.append((item, error))
    result.outcomes["rejected"] += 1


def discover(
    items: Iterable[pystac.Item],
    subscriptions: Iterable[Subscription],
    published: Callable[[set[str]], Mapping[tuple[str, str], Published]],
    discovered_at: datetime,
    source: str = "",
    max_event_bytes: int | None = None,
) -> Discovery:
    """Scene events for the new acquisitions and versions over each subscription.

    `published(keys)` maps (acquisition key, AOI name) to what was published before, for
    the acquisition keys of these items. The same acquisition seen again, from any
    provider or collection, is a `duplicate` (or `outdated`, when older) unless its
    version (processing baseline, then production time) is newer: then it is published
    with `reprocessed` set, under the acquisition time of the version it replaces, so
    that rows downstream are overwritten rather than duplicated.

    An item whose scene event would be larger than `max_event_bytes` (a footprint of
    very many vertices) is rejected: no broker would take the event.
    """
    result = Discovery()
    subs = list(subscriptions)
    newest = newest_versions(items, discovered_at, source, result)
    before_now = published({m.acquisition_key for m, _ in newest})
    for mapped, item in newest:
        for sub in subs:
            if not sub.takes(mapped):
                continue
            event = mapped.event
            if sub.max_cloud_cover is not None and event.cloud_cover > sub.max_cloud_cover:
                result.outcomes["too_cloudy"] += 1
                continue
            if not sub.in_season(event.header.acquired_at.ToDatetime(tzinfo=UTC)):
                result.outcomes["out_of_season"] += 1
                continue
            scene = pb.SceneDiscovered()
            scene.CopyFrom(event)
            scene.aoi.CopyFrom(sub.aoi)
            before = before_now.get((mapped.acquisition_key, sub.aoi.name))
            if before is not None:
                if mapped.version <= before.version:
                    result.outcomes[_repeat(mapped.version, before.version)] += 1
                    continue
                scene.reprocessed = True
                scene.replaces_scene_id = before.scene_id
                scene.header.acquired_at.FromDatetime(before.acquired_at)
            if max_event_bytes is not None and scene.ByteSize() > max_event_bytes:
                # deterministic words (no byte count of the event, whose timestamps vary):
                # the same item searched again gives the same reason
                error = PoisonError(
                    f"item {item.id}: its scene event for AOI {sub.aoi.name} is over the "
                    f"{max_event_bytes}-byte event limit: its footprint has "
                    f"{shapely.get_num_coordinates(mapped.geometry)} vertices "
                    f"({len(scene.footprint_wkt)} bytes of WKT)"
                )
                _reject(result, item, error)
                continue
            result.outcomes["reprocessed" if scene.reprocessed else "published"] += 1
            result.scenes.append(scene)
    # in acquisition order, whatever the collection: each tile's passes in date order, and
    # a parcels AOI's passes of both sensors (one partition) too, so that the S1+S2 crop
    # model of a pass reads the other sensor's passes before it
    result.scenes.sort(key=lambda s: (s.header.acquired_at.ToDatetime(), s.tile_id))
    return result
