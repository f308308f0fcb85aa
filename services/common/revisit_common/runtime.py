"""The consume → decode → handle → produce → commit loop, written once for every stage.

Delivery is at-least-once with an exactly-once effect downstream: offsets are committed
only after every output of the polled records is acknowledged by the broker (and, for
the store, after its database transaction has committed inside ``process``). A message
that can never be processed goes to ``<topic>.dlq`` with the reason; a transient failure
is retried with backoff until it succeeds or the service is asked to stop, in which case
the message is left uncommitted and is processed again after the restart.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError, TransientError
from revisit_common.events import decode, dlq_topic, now, timestamp
from revisit_common.health import serve
from revisit_common.lag import LagMonitor
from revisit_common.metrics import ServiceMetrics
from revisit_common.settings import ServiceSettings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

#: How long the broker may take to acknowledge the outputs of one poll.
ACK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Output:
    """One event to produce: the handler's result, independent of Kafka."""

    topic: str
    key: bytes
    event: Message


@dataclass(frozen=True)
class Stage(Generic[M]):
    """A consuming stage: its input and the function that turns one event into outputs.

    With `process_many`, the events of one poll are handled together (one list of
    outputs per event, in order), so that a stage can batch work across messages; if it
    raises a PoisonError or fails unexpectedly, the events are handled again one by one
    with `process`, which sends only the bad one to the DLQ.
    """

    service: str
    input_topic: str
    event_type: type[M]
    process: Callable[[M], Sequence[Output]]
    process_many: Callable[[list[M]], Sequence[Sequence[Output]]] | None = None

    @property
    def group_id(self) -> str:
        return f"revisit-{self.service}"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


class ServiceApp:
    """What a service process owns: settings, metrics, HTTP endpoints, producer, stop flag."""

    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.service = service
        self.settings = settings
        self.registry = registry
        self.metrics = ServiceMetrics(service, registry)
        self.stop = threading.Event()
        self.state = "starting"
        self._producer: KafkaProducer | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # offsets whose commit failed
        self.http = serve(settings.metrics_host, settings.metrics_port, registry, self._health)

    @property
    def metrics_port(self) -> int:
        return int(self.http.server_address[1])

    def _health(self) -> tuple[bool, str]:
        return self.state in ("starting", "running", "retrying"), self.state

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the message in hand, commit, and exit."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("%s: signal %d, draining", self.service, signum)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def backoff(self) -> Backoff:
        return Backoff(self.settings.retry_initial_s, self.settings.retry_max_s, self.stop)

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._connect(
                lambda: KafkaProducer(
                    **self.settings.kafka_options(),
                    client_id=f"revisit-{self.service}",
                    acks="all",
                    linger_ms=5,
                    retries=5,
                    # a retried batch never overtakes the next one: passes of one key stay
                    # in order (the S1+S2 model reads a parcels AOI's passes in that order)
                    max_in_flight_requests_per_connection=1,
                    # room for the key and the record's framing above the event limit
                    max_request_size=max(1_048_576, self.settings.max_event_bytes + 65_536),
                )
            )
        return self._producer

    def _connect(self, factory: Callable[[], Any]) -> Any:
        backoff = self.backoff()
        while True:
            try:
                return factory()
            except KafkaError as exc:
                log.warning(
                    "%s: Kafka at %s not reachable yet (%s), retrying",
                    self.service,
                    self.settings.kafka_bootstrap,
                    exc,
                )
                if not backoff.wait():
                    raise

    def send(self, outputs: Sequence[Output]) -> list[Any]:
        """Send outputs; returns futures, acknowledged by `acknowledge`."""
        futures = []
        for out in outputs:
            future = self.producer.send(out.topic, key=out.key, value=out.event.SerializeToString())
            futures.append((out.topic, future))
        return futures

    def acknowledge(self, futures: list[Any]) -> bool:
        """Wait for the broker to acknowledge every send; False if any failed."""
        if not futures:
            return True
        self.producer.flush(timeout=ACK_TIMEOUT_S)
        ok = True
        for topic, future in futures:
            try:
                future.get(timeout=ACK_TIMEOUT_S)
                self.metrics.produced.labels(topic).inc()
            except KafkaError as exc:
                log.warning("%s: send to %s not acknowledged: %s", self.service, topic, exc)
                ok = False
        return ok

    def consume(self, stage: Stage[M]) -> None:
        """Run the stage until `stop` is set, then commit what is done and return."""
        consumer: KafkaConsumer = self._connect(
            lambda: KafkaConsumer(
                stage.input_topic,
                **self.settings.kafka_options(),
                group_id=stage.group_id,
                client_id=f"revisit-{self.service}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.settings.max_poll_records,
                session_timeout_ms=self.settings.kafka_session_timeout_ms,
                group_instance_id=self.settings.kafka_group_instance_id or None,
            )
        )
        self.state = "running"
        self.metrics.topics(consumed=stage.input_topic, dlq=dlq_topic(stage.input_topic))
        log.info("%s: consuming %s as %s", self.service, stage.input_topic, stage.group_id)
        LagMonitor(
            self.settings.kafka_options(),
            stage.group_id,
            stage.input_topic,
            self.metrics.consumer_lag,
            self.stop,
        ).start()
        backoff = self.backoff()
        try:
            while not self.stop.is_set():
                try:
                    self._poll_once(consumer, stage)
                    backoff.reset()
                except KafkaError as exc:
                    # The broker went away (a restart): nothing of the poll was committed,
                    # so it is read again once the broker is back.
                    self.state = "retrying"
                    log.warning("%s: Kafka unavailable, retrying: %s", self.service, exc)
                    backoff.wait()
        finally:
            self.state = "stopping"
            consumer.close(autocommit=False)
            self.close()

    def close(self) -> None:
        """Flush and close the producer and the HTTP endpoints."""
        if self._producer is not None:
            self._producer.close(timeout=ACK_TIMEOUT_S)
            self._producer = None
        self.http.shutdown()
        log.info("%s: stopped", self.service)

    def _poll_once(self, consumer: KafkaConsumer, stage: Stage[M]) -> None:
        polled = consumer.poll(timeout_ms=500)
        records = [record for tp_records in polled.values() for record in tp_records]
        first = {tp: tp_records[0].offset for tp, tp_records in polled.items()}
        self.metrics.consumed.labels(stage.input_topic).inc(len(records))
        if stage.process_many is not None and len(records) > 1:
            handled = self._handle_many(stage, records)
        else:
            handled = []
            for record in records:
                outputs = self._handle(stage, record)
                if outputs is None:
                    break
                handled.append(outputs)
        interrupted = len(handled) < len(records)
        futures: list[Any] = []
        done: dict[TopicPartition, int] = {}
        for record, outputs in zip(records, handled, strict=False):
            futures += self.send(outputs)
            done[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if not self.acknowledge(futures):
            # Nothing of this poll is committed: process it again from the start.
            for tp, offset in first.items():
                consumer.seek(tp, offset)
            self.backoff().wait()
            return
        done = {**self._uncommitted, **done}
        if done:
            try:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in done.items()})
                self._uncommitted = {}
            except CommitFailedError as exc:
                # A rebalance moved the partitions: their new owner processes the records
                # again, which the idempotent writes downstream absorb.
                self._uncommitted = {}
                log.warning("%s: offset commit failed: %s", self.service, exc)
            except KafkaError as exc:
                # The broker is away: commit these offsets with the next poll's.
                self._uncommitted = done
                log.warning(
                    "%s: offset commit failed, kept for the next poll: %s", self.service, exc
                )
        if interrupted:
            self.stop.set()

    def _handle_many(self, stage: Stage[M], records: list[Any]) -> list[Sequence[Output]]:
        """Outputs of each record, the decodable ones handled together; a shorter list
        (nothing) when stopping."""
        assert stage.process_many is not None
        outputs: dict[int, Sequence[Output]] = {}
        events: list[tuple[int, M]] = []
        for i, record in enumerate(records):
            try:
                events.append((i, decode(stage.event_type, record.value)))
            except PoisonError as exc:
                outputs[i] = self._poison(stage, record, self._where(record), exc)
        backoff = self.backoff()
        started = time.perf_counter()
        while events:
            try:
                results = stage.process_many([event for _, event in events])
                if len(results) != len(events):
                    raise RuntimeError(f"{len(results)} results for {len(events)} events")
                self.metrics.handler_seconds.observe(time.perf_counter() - started)
                self.metrics.last_success.set_to_current_time()
                self.state = "running"
                for (i, _), result in zip(events, results, strict=True):
                    try:
                        self._check_size(result)
                        outputs[i] = result
                    except PoisonError as exc:
                        outputs[i] = self._poison(stage, records[i], self._where(records[i]), exc)
                break
            except TransientError as exc:
                self.metrics.failed.labels("transient").inc()
                self.state = "retrying"
                log.warning(
                    "%s: %d records from %s: transient failure, retrying: %s",
                    self.service,
                    len(events),
                    self._where(records[events[0][0]]),
                    exc,
                )
                if not backoff.wait():
                    return []
            except Exception as exc:  # noqa: BLE001 -- poison among them, or a bug: find which
                log.warning(
                    "%s: batch of %d failed (%s): one by one", self.service, len(events), exc
                )
                for i, _ in events:
                    single = self._handle(stage, records[i])
                    if single is None:
                        return []
                    outputs[i] = single
                break
        return [outputs[i] for i in range(len(records))]

    @staticmethod
    def _where(record: Any) -> str:
        return f"{record.topic}[{record.partition}]@{record.offset}"

    def _handle(self, stage: Stage[M], record: Any) -> Sequence[Output] | None:
        """Outputs of one record (its DLQ record if it is poison); None when stopping."""
        where = self._where(record)
        backoff = self.backoff()
        started = time.perf_counter()
        try:
            event = decode(stage.event_type, record.value)
        except PoisonError as exc:
            return self._poison(stage, record, where, exc)
        while True:
            try:
                outputs = stage.process(event)
                self._check_size(outputs)
                self.metrics.handler_seconds.observe(time.perf_counter() - started)
                self.metrics.last_success.set_to_current_time()
                self.state = "running"
                return outputs
            except TransientError as exc:
                self.metrics.failed.labels("transient").inc()
                self.state = "retrying"
                log.warning("%s: %s: transient failure, retrying: %s", self.service, where, exc)
                if not backoff.wait():
                    return None
            except PoisonError as exc:
                return self._poison(stage, record, where, exc)
            except Exception as exc:
                self.metrics.failed.labels("unexpected").inc()
                log.exception("%s: %s: unexpected error, to DLQ", self.service, where)
                return [self._dead_letter(stage, record, exc, traceback.format_exc())]

    def _check_size(self, outputs: Sequence[Output]) -> None:
        """PoisonError when an output is larger than the event limit: the broker would
        refuse it, and the record would be retried forever."""
        limit = self.settings.max_event_bytes
        for out in outputs:
            if (size := out.event.ByteSize()) > limit:
                raise PoisonError(
                    f"its {type(out.event).__name__} for {out.topic} would be {size} bytes, "
                    f"over the {limit}-byte event limit (REVISIT_MAX_EVENT_BYTES)"
                )

    def _poison(self, stage: Stage[M], record: Any, where: str, exc: PoisonError) -> list[Output]:
        self.metrics.failed.labels("poison").inc()
        log.error("%s: %s: to DLQ: %s", self.service, where, exc)
        return [self._dead_letter(stage, record, exc)]

    def _dead_letter(
        self, stage: Stage[M], record: Any, exc: BaseException, detail: str = ""
    ) -> Output:
        return self.dead_letter(
            stage.input_topic,
            record.topic,
            record.key or b"",
            record.value or b"",
            exc,
            detail,
            partition=record.partition,
            offset=record.offset,
        )

    def dead_letter(
        self,
        input_topic: str,
        source: str,
        key: bytes,
        value: bytes,
        exc: BaseException,
        detail: str = "",
        partition: int = 0,
        offset: int = 0,
    ) -> Output:
        """The DLQ record of something this service can never process, with the reason:
        a Kafka record, or input from elsewhere (`source`: where it came from)."""
        topic = dlq_topic(input_topic)
        self.metrics.dead_lettered.labels(topic).inc()
        letter = pb.DeadLetter(
            stage=self.service,
            source_topic=source,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            error_type=type(exc).__name__,
            error=f"{exc}\n{detail}".strip(),
            failed_at=timestamp(now()),
        )
        if (size := letter.ByteSize()) > self.settings.max_event_bytes:
            # Too large for the DLQ as it is: keep the start of the value, say what it was.
            keep = max(0, len(value) - (size - self.settings.max_event_bytes) - 1024)
            letter.value = value[:keep]
            letter.value_cut_from = len(value)
            letter.error += (
                f"\n(value cut from {len(value)} to {keep} bytes, sha256 "
                f"{hashlib.sha256(value).hexdigest()}: the original is {source}"
                f"[{partition}]@{offset})"
            )
        return Output(topic=topic, key=key, event=letter)


class Backoff:
    """Exponential backoff that wakes up early when the service is asked to stop."""

    def __init__(self, initial_s: float, max_s: float, stop: threading.Event) -> None:
        self.initial_s = initial_s
        self.delay = initial_s
        self.max_s = max_s
        self.stop = stop

    def reset(self) -> None:
        """Back to the initial delay (after a success)."""
        self.delay = self.initial_s

    def wait(self) -> bool:
        """Sleep the current delay; False if the service is stopping."""
        if self.stop.wait(self.delay):
            return False
        self.delay = min(self.delay * 2, self.max_s)
        return True
