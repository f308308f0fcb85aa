"""The store against the real PostGIS: migrations, idempotent upserts, error classes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from revisit_catalog.handler import Subscription
from revisit_catalog.registry import mark_published, record_scenes, save_subscriptions
from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.db.migrate import downgrade, upgrade
from revisit_common.errors import PoisonError, TransientError
from revisit_common.events import root_header
from revisit_store.handler import rows_for
from revisit_store.writer import write

pytestmark = pytest.mark.integration

AOI = pb.Aoi(
    name="hesbaye-demo",
    kind="city",
    geometry_wkt="POLYGON ((5.3189 50.6289, 5.333 50.6286, 5.3334 50.6376, "
    "5.3193 50.6378, 5.3189 50.6289))",
)
ACQUIRED = datetime(2021, 6, 1, tzinfo=UTC)


def scene_event() -> pb.SceneDiscovered:
    return pb.SceneDiscovered(
        header=root_header("catalog", "WORLDCEREAL_S2_31UFS_20210601_MONTHLY", ACQUIRED, ACQUIRED),
        collection="sentinel-2-l2a",
        tile_id="31UFS",
        footprint_wkt=AOI.geometry_wkt,
        aoi=AOI,
    )


def predictions(scene: pb.SceneDiscovered, classes: list[int]) -> pb.PredictionBatch:
    batch = pb.PredictionBatch(
        header=scene.header,
        tile_id="31UFS",
        aoi=AOI,
        indicator="lcz",
        model_name="lcz_sen2lcz_drop",
        model_version="1",
        epsg=32631,
    )
    for i, code in enumerate(classes):
        x = 664000 + 320 * i
        probabilities = [0.0] * 17
        probabilities[code - 1] = 0.75
        batch.predictions.append(
            pb.Prediction(
                entity_id=f"32631:{x}:5612120",
                geometry_wkt=f"POLYGON (({x} 5611800, {x + 320} 5611800, {x + 320} 5612120, "
                f"{x} 5612120, {x} 5611800))",
                class_code=code,
                confidence=0.75,
                probabilities=probabilities,
            )
        )
    return batch


def table_checksum(engine: Engine, table: str) -> str:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t")
        )
        return str(rows.scalar())


def test_migrations_go_down_and_up(stack: StackConfig) -> None:
    downgrade(stack.database_url)
    engine = create_engine(stack.database_url)
    assert "lcz_cell" not in inspect(engine).get_table_names()
    upgrade(stack.database_url)
    assert {"aoi", "scene", "scene_processing", "lcz_cell"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_replaying_a_batch_leaves_every_table_unchanged(engine: Engine) -> None:
    scene = scene_event()
    save_subscriptions(engine, [Subscription(AOI)])
    record_scenes(engine, [scene])
    mark_published(engine, [scene])
    batch = predictions(scene, [9, 14, 14, 9])
    write(engine, rows_for(batch))
    before = {
        t: table_checksum(engine, t) for t in ("lcz_cell", "scene_processing", "scene", "aoi")
    }
    write(engine, rows_for(batch))
    write(engine, rows_for(batch))
    after = {t: table_checksum(engine, t) for t in ("lcz_cell", "scene_processing", "scene", "aoi")}
    assert before == after
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT lcz_class, ST_SRID(geom), round(ST_Area(ST_Transform(geom, 32631))) "
                "FROM lcz_cell ORDER BY cell_id"
            )
        ).all()
        status = conn.execute(text("SELECT status, results FROM scene_processing")).one()
    assert [r[0] for r in rows] == [9, 14, 14, 9]
    assert {(r[1], r[2]) for r in rows} == {(4326, 102400)}  # 320 m × 320 m cells in WGS 84
    assert tuple(status) == ("stored", 4)


def test_unknown_aoi_is_poison(engine: Engine) -> None:
    with pytest.raises(PoisonError, match="unknown AOI"):
        write(engine, rows_for(predictions(scene_event(), [9])))


def test_database_down_is_transient(stack: StackConfig) -> None:
    closed = create_engine(stack.database_url.replace(str(stack.postgres_port), "1"))
    with pytest.raises(TransientError, match="database unavailable"):
        write(closed, rows_for(predictions(scene_event(), [9])))


def test_out_of_range_class_is_rejected_before_the_database() -> None:
    batch = predictions(scene_event(), [9])
    batch.predictions[0].class_code = 18
    with pytest.raises(PoisonError, match=r"out of 1\.\.17"):
        rows_for(batch)
