"""Consumer lag as the broker sees it: the group's committed offset against the end of
each partition, read every few seconds by a thread of its own, so that the gauge keeps
moving while the stage is blocked (retrying, or waiting for a server)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from prometheus_client import Gauge

log = logging.getLogger(__name__)


def offsets_reader(options: dict[str, Any], group: str) -> KafkaConsumer:
    """A consumer of `group` that only reads offsets: it subscribes to nothing, so it
    never joins the group nor moves its partitions. `options`: connection options
    (`ServiceSettings.kafka_options`)."""
    return KafkaConsumer(
        **options,
        group_id=group,
        client_id=f"{group}-lag",
        enable_auto_commit=False,
    )


def group_lag(offsets: KafkaConsumer, topic: str) -> dict[int, int]:
    """Messages not yet committed by the group of `offsets` (`offsets_reader`), per
    partition of `topic`: end offset minus committed offset (minus the first offset still
    kept when the group committed none)."""
    partitions = offsets.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return {}
    ends = offsets.end_offsets(tps)
    starts = offsets.beginning_offsets(tps)
    lag = {}
    for tp in tps:
        committed = offsets.committed(tp)
        position = committed if committed is not None and committed >= 0 else starts[tp]
        lag[tp.partition] = max(ends[tp] - position, 0)
    return lag


class LagMonitor:
    """Keeps `gauge{topic, partition}` at the lag of one group on one topic."""

    def __init__(
        self,
        options: dict[str, Any],
        group: str,
        topic: str,
        gauge: Gauge,
        stop: threading.Event,
        interval_s: float = 5.0,
    ) -> None:
        self.options, self.group, self.topic = options, group, topic
        self.gauge, self.stop, self.interval_s = gauge, stop, interval_s
        self.thread = threading.Thread(target=self._run, name=f"lag-{group}", daemon=True)

    def start(self) -> LagMonitor:
        self.thread.start()
        return self

    def _run(self) -> None:
        offsets: KafkaConsumer | None = None
        while not self.stop.wait(self.interval_s if offsets else 0.1):
            try:
                if offsets is None:
                    offsets = offsets_reader(self.options, self.group)
                for partition, lag in group_lag(offsets, self.topic).items():
                    self.gauge.labels(self.topic, str(partition)).set(lag)
            except (KafkaError, OSError) as exc:  # the broker is away: try again later
                log.debug("lag of %s on %s not read: %s", self.group, self.topic, exc)
                if offsets is not None:
                    offsets.close()
                offsets = None
                self.stop.wait(self.interval_s)
        if offsets is not None:
            offsets.close()
