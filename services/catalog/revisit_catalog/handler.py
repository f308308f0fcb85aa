"""Discovery as a plain function: items and AOIs in, scene events and rejects out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pystac
from shapely import wkt

from revisit_catalog.stac import footprint, scene_event
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError


@dataclass(frozen=True)
class Subscription:
    """An AOI the catalog watches, and the collections it wants."""

    aoi: pb.Aoi
    collections: tuple[str, ...] = ("sentinel-2-l2a",)


@dataclass
class Discovery:
    scenes: list[pb.SceneDiscovered] = field(default_factory=list)
    rejected: list[tuple[pystac.Item, PoisonError]] = field(default_factory=list)


def discover(
    items: Iterable[pystac.Item],
    subscriptions: Iterable[Subscription],
    is_known: Callable[[str, str], bool],
    discovered_at: datetime,
) -> Discovery:
    """Scene events for items over each subscription that `is_known(scene, aoi)` has not seen.

    Items that can never become a scene are returned as rejected, with the reason.
    """
    result = Discovery()
    subs = [(s, wkt.loads(s.aoi.geometry_wkt)) for s in subscriptions]
    for item in items:
        try:
            geom = footprint(item)
            for sub, aoi_geom in subs:
                if item.collection_id not in sub.collections or not geom.intersects(aoi_geom):
                    continue
                if is_known(item.id, sub.aoi.name):
                    continue
                result.scenes.append(scene_event(item, sub.aoi, discovered_at))
        except PoisonError as exc:
            result.rejected.append((item, exc))
    result.scenes.sort(key=lambda s: (s.tile_id, s.header.acquired_at.ToDatetime()))
    return result
