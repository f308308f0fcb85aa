"""The metrics every service exports, named `revisit_<service>_<what>_<unit>`.

Labels come from small fixed sets (topic, outcome, reason): never a scene, tile or
parcel id, so the number of series stays bounded whatever the data.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: From acquisition, latencies are days for an archive and minutes for a live pass.
AGE_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)


class ServiceMetrics:
    """The shared metrics of one service process."""

    def __init__(self, service: str, registry: CollectorRegistry = REGISTRY) -> None:
        prefix = f"revisit_{service}"
        self.service = service
        self.registry = registry
        self.consumed = Counter(
            f"{prefix}_messages_consumed",
            "Messages read from the input topic.",
            ["topic"],
            registry=registry,
        )
        self.produced = Counter(
            f"{prefix}_messages_produced",
            "Messages acknowledged by the broker.",
            ["topic"],
            registry=registry,
        )
        self.failed = Counter(
            f"{prefix}_messages_failed",
            "Failed processing attempts, by kind (poison, transient, unexpected).",
            ["kind"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            f"{prefix}_messages_dead_lettered",
            "Messages sent to the stage's DLQ.",
            ["topic"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            f"{prefix}_handler_duration_seconds",
            "Time to process one message, outputs included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            f"{prefix}_consumer_lag_messages",
            "Messages of the input topic not yet committed by the service's group, per "
            "partition, as the broker sees it.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_success = Gauge(
            f"{prefix}_last_success_timestamp_seconds",
            "When a message was last processed successfully.",
            registry=registry,
        )
        for kind in ("poison", "transient", "unexpected"):
            self.failed.labels(kind)  # every series exists from the start, at 0

    def topics(self, consumed: str = "", produced: tuple[str, ...] = (), dlq: str = "") -> None:
        """Start the series of the service's topics at 0, so that rates and alerts see
        them before the first message."""
        if consumed:
            self.consumed.labels(consumed)
        for topic in produced:
            self.produced.labels(topic)
        if dlq:
            self.dead_lettered.labels(dlq)
