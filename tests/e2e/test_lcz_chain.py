"""The whole chain as the demo runs it: four service processes on the real Kafka,
PostGIS and Triton, fed the 12 real monthly passes. The LCZ classes stored are exactly
those of the original Keras model on the same patches; a full replay of the store's
input leaves the tables unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine, text

from revisit_cli.services import SERVICES, ServicesConfig, start_services
from revisit_cli.stack import ManagedProcess, StackConfig
from revisit_common.events import PREDICTIONS_TOPIC
from tests.conftest import consecutive_free_ports

pytestmark = pytest.mark.e2e

SCENES = 12


@pytest.fixture(scope="module")
def services(stack: StackConfig, demo_catalog: Path) -> Iterator[ServicesConfig]:
    config = ServicesConfig(
        metrics_base_port=consecutive_free_ports(len(SERVICES)),
        catalog_source=str(demo_catalog),
        catalog_poll_interval_s=2,
    )
    yield config
    for name in SERVICES:
        ManagedProcess.attach(name, stack.state_dir).stop()


def wait_until(predicate, timeout_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{what}: not after {timeout_s} s")
        time.sleep(0.5)
    return time.monotonic() - t0


def completed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM scene_processing WHERE status <> 'discovered'")
            ).scalar_one()
        )


def lcz_checksum(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT count(*), md5(string_agg(c::text, '|' ORDER BY c.id)) FROM lcz_cell c")
        ).one()
    return int(row[0]), str(row[1])


def test_real_passes_end_to_end(
    stack: StackConfig,
    services: ServicesConfig,
    engine: Engine,
    lcz_parity: dict[str, np.ndarray],
) -> None:
    start_services(stack, services)
    wait_until(lambda: completed(engine) == SCENES, 240, "12 scenes stored")

    with engine.connect() as conn:
        stored = {
            (day.date().isoformat(), cell): lcz
            for day, cell, lcz in conn.execute(
                text("SELECT acquired_at, cell_id, lcz_class FROM lcz_cell")
            )
        }
        statuses = dict(
            conn.execute(
                text("SELECT status, count(*) FROM scene_processing GROUP BY status")
            ).all()
        )
        latencies = [
            row[0]
            for row in conn.execute(
                text(
                    "SELECT extract(epoch FROM completed_at - discovered_at) FROM scene_processing"
                )
            )
        ]
        models = conn.execute(text("SELECT DISTINCT model_name, model_version FROM lcz_cell")).all()
    epoch = datetime(1990, 1, 1, tzinfo=UTC)
    expected = {
        (
            (epoch + timedelta(days=int(d))).date().isoformat(),
            f"32631:{664000 + 10 * int(c)}:{5612120 - 10 * int(r)}",
        ): int(k) + 1
        for d, r, c, k in zip(
            lcz_parity["days_since_1990"],
            lcz_parity["row"],
            lcz_parity["col"],
            lcz_parity["keras_probabilities"].argmax(1),
            strict=True,
        )
    }
    assert stored == expected
    assert statuses == {"stored": 10, "no_valid_observation": 2}
    assert [tuple(m) for m in models] == [("lcz_sen2lcz_drop", "1")]
    print(
        f"\ndiscovery → rows in PostGIS: median {np.median(latencies):.2f} s, "
        f"max {max(latencies):.2f} s"
    )

    # Replay everything the store consumed: same rows, same values.
    before = lcz_checksum(engine)
    store = ManagedProcess.attach("store", stack.state_dir)
    store.stop()
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id="revisit-store")
    partitions = [TopicPartition(PREDICTIONS_TOPIC, p) for p in range(3)]
    consumer.assign(partitions)
    consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in partitions})  # rewind the group
    ends = sum(consumer.end_offsets(partitions).values())
    start_services(stack, services, ("store",))

    def replayed() -> bool:
        return sum(consumer.committed(tp) or 0 for tp in partitions) == ends

    wait_until(replayed, 120, "store replayed every prediction batch")
    consumer.close()
    assert ends >= SCENES
    assert lcz_checksum(engine) == before == (90, before[1])
