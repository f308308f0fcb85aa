"""Searching a source for one AOI's collections over a time window, publishing what is
new, and moving the cursors: the steps that polling and backfill share."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as MetricCounter
from sqlalchemy import Engine

from revisit_catalog.handler import OUTCOMES, Discovery, Subscription, discover
from revisit_catalog.registry import (
    Cursor,
    mark_published,
    published,
    read_cursor,
    record_scenes,
    save_cursor,
)
from revisit_catalog.sources import Source
from revisit_common.errors import TransientError
from revisit_common.events import SCENES_TOPIC, dlq_topic, now, partition_key
from revisit_common.runtime import Output, ServiceApp

log = logging.getLogger("revisit_catalog")

#: Rejected items remembered, so that one searched again (every poll searches its overlap
#: again) is not dead-lettered again; the oldest are forgotten first.
REMEMBERED_REJECTS = 10_000


class CatalogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = MetricCounter(
            "revisit_catalog_items",
            "STAC items seen per subscription, by outcome (published, reprocessed, "
            "duplicate, outdated, too_cloudy, out_of_season, rejected).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.items.labels(outcome)


@dataclass
class Summary:
    """What a poll or a backfill did."""

    windows: int = 0
    items: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, items: int, found: Discovery, searches: int) -> None:
        self.windows += searches
        self.items += items
        self.outcomes.update(found.outcomes)

    def line(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()) if v)
        return f"{self.windows} searches, {self.items} items: {counts or 'nothing new'}"


class Ingest:
    """Publishes scene events for subscriptions, from one source, through one app."""

    def __init__(self, app: ServiceApp, engine: Engine, source: Source) -> None:
        self.app = app
        self.engine = engine
        self.source = source
        self.metrics = CatalogMetrics(app.registry)
        self._lettered: OrderedDict[str, None] = OrderedDict()
        app.metrics.topics(produced=(SCENES_TOPIC,), dlq=dlq_topic(SCENES_TOPIC))

    def search(
        self, sub: Subscription, windows: Mapping[str, tuple[datetime, datetime]]
    ) -> tuple[int, Discovery]:
        """Search each collection's window [start, end] for one AOI and publish what they
        found together, in acquisition order whatever the collection (a parcels AOI's
        Sentinel-1 and Sentinel-2 passes interleaved by date, so that the S1+S2 crop model
        of each pass reads the other sensor's earlier passes); dead-letter the rejected
        items. Returns the number of items found and the discovery."""
        items = [
            item
            for collection, (start, end) in windows.items()
            for item in self.source.search(collection, sub.geometry, start, end)
        ]
        found = discover(
            items,
            [replace(sub, collections=tuple(windows))],
            lambda keys: published(self.engine, keys),
            now(),
            self.source.name,
            self.app.settings.max_event_bytes,
        )
        self._publish(found)
        for outcome, count in found.outcomes.items():
            self.metrics.items.labels(outcome).inc(count)
        return len(items), found

    def _publish(self, found: Discovery) -> None:
        """Dead-letter the rejected items (each content and reason once per process: a
        restart letters those still in a poll's overlap once more), record and publish
        the scenes."""
        letters, lettered = [], []
        for item, error in found.rejected:
            value = json.dumps(item.to_dict(transform_hrefs=False)).encode()
            seen = hashlib.sha256(value + str(error).encode()).hexdigest()
            if seen in self._lettered or seen in lettered:
                continue
            log.error("catalog: item %s to DLQ: %s", item.id, error)
            letters.append(
                self.app.dead_letter(SCENES_TOPIC, self.source.name, item.id.encode(), value, error)
            )
            lettered.append(seen)
        # Recorded first, published, then marked: a crash in between publishes the scenes
        # again, which the idempotent stages downstream absorb; the reverse order could
        # lose them.
        record_scenes(self.engine, found.scenes)
        outputs = [Output(SCENES_TOPIC, partition_key(s.aoi, s.tile_id), s) for s in found.scenes]
        if not self.app.acknowledge(self.app.send(letters + outputs)):
            raise TransientError("scene or DLQ records not acknowledged")
        for seen in lettered:
            self._lettered[seen] = None
            if len(self._lettered) > REMEMBERED_REJECTS:
                self._lettered.popitem(last=False)
        mark_published(self.engine, found.scenes)
        for scene in found.scenes:
            log.info(
                "catalog: published %s for AOI %s%s",
                scene.header.scene_id,
                scene.aoi.name,
                f" (reprocesses {scene.replaces_scene_id})" if scene.reprocessed else "",
            )

    def _cursor(self, sub: Subscription, collection: str, mode: str) -> Cursor | None:
        return read_cursor(self.engine, sub.aoi.name, self.source.name, collection, mode)

    def _save(self, sub: Subscription, collection: str, mode: str, cursor: Cursor) -> None:
        save_cursor(self.engine, sub.aoi.name, self.source.name, collection, mode, cursor)

    def backfill_position(
        self, sub: Subscription, collection: str, start: datetime, end: datetime
    ) -> datetime:
        """Where a backfill of [start, end) starts: after the windows an earlier run of the
        same backfill completed, else at `start`."""
        cursor = self._cursor(sub, collection, "backfill")
        if cursor and (cursor.range_start, cursor.range_end) == (start, end):
            return cursor.position
        return start

    def poll(
        self,
        subs: list[Subscription],
        lookback: timedelta,
        overlap: timedelta,
        until: datetime | None = None,
        first: datetime | None = None,
    ) -> Summary:
        """Search each AOI's collections, each from its cursor (less `overlap`, for items
        published late) to `until` (now); without a cursor, from `first`, else from
        `lookback` before. An AOI's collections are published together (`search`)."""
        summary = Summary()
        for sub in subs:
            end = until or now()
            windows = {}
            for collection in sub.collections:
                cursor = self._cursor(sub, collection, "poll")
                windows[collection] = (
                    cursor.position - overlap if cursor else first or end - lookback,
                    end,
                )
            items, found = self.search(sub, windows)
            for collection in windows:
                self._save(sub, collection, "poll", Cursor(end))
            summary.add(items, found, len(windows))
        return summary

    def backfill(
        self,
        sub: Subscription,
        start: datetime,
        end: datetime,
        step: timedelta,
        progress: Callable[[datetime, Summary], None] | None = None,
    ) -> Summary:
        """Search [start, end) window by window, each window of every collection of the
        AOI together (`search`); each collection's cursor is saved after each window, so
        running the same backfill again resumes after the last complete window."""
        summary = Summary()
        positions = {c: self.backfill_position(sub, c, start, end) for c in sub.collections}
        for collection, at in positions.items():
            if at > start:
                log.info("catalog: backfill of %s resumes at %s", collection, at)
        position = min(positions.values(), default=end)
        while position < end:
            if self.app.stop.is_set():
                return summary
            window_end = min(position + step, end)
            due = [c for c, at in positions.items() if at <= position]
            # STAC datetime intervals are closed: stop just short of the next window.
            last = window_end - timedelta(microseconds=1)
            items, found = self.search(sub, {c: (position, last) for c in due})
            summary.add(items, found, len(due))
            position = window_end
            for collection in due:
                positions[collection] = position
                self._save(sub, collection, "backfill", Cursor(position, start, end))
            if progress is not None:
                progress(position, summary)
        return summary
