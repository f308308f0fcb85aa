"""The store against the real PostGIS: migrations, idempotent upserts, error classes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import shapely
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import ProgrammingError

from revisit_catalog.handler import Subscription
from revisit_catalog.registry import mark_published, record_scenes, save_subscriptions
from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.db.migrate import downgrade, upgrade
from revisit_common.db.parcels import ParcelRecord, load_parcels
from revisit_common.errors import PoisonError, TransientError
from revisit_store.handler import rows_for
from revisit_store.writer import write
from tests.predictions import prediction_batch, scene_discovered

pytestmark = pytest.mark.integration

AOI = pb.Aoi(
    name="hesbaye-demo",
    kind="city",
    geometry_wkt="POLYGON ((5.3189 50.6289, 5.333 50.6286, 5.3334 50.6376, "
    "5.3193 50.6378, 5.3189 50.6289))",
)
ACQUIRED = datetime(2021, 6, 1, tzinfo=UTC)


def scene_event() -> pb.SceneDiscovered:
    return scene_discovered(AOI, ACQUIRED, "WORLDCEREAL_S2_31UFS_20210601_MONTHLY")


def predictions(scene: pb.SceneDiscovered, classes: list[int]) -> pb.PredictionBatch:
    """LCZ classes of 320 m cells in a row, on the scene's AOI."""
    batch = prediction_batch(scene, "lcz", epsg=32631)
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
    assert {
        "aoi",
        "scene",
        "scene_processing",
        "lcz_cell",
        "parcel_prediction",
        "landcover_indicator",
    } <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_going_down_to_the_indicator_tables_and_up_again_keeps_their_rows(
    stack: StackConfig, engine: Engine
) -> None:
    city, region = _published(engine, AOI), _published(engine, REGION_AOI)
    write(engine, rows_for(predictions(city, [9, 14, 14, 6])))
    for batch in area_batches(region):
        write(engine, rows_for(batch))
    tables = ("aoi", "scene", "scene_processing", "lcz_cell", "landcover_indicator")
    before = {t: table_checksum(engine, t) for t in tables}
    downgrade(stack.database_url, "0004")  # undoes the roles' grants, views and functions
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('lcz_share')")).scalar() is None
    upgrade(stack.database_url)
    assert {t: table_checksum(engine, t) for t in tables} == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(cells) FROM lcz_share")).scalar() == 4
        for view in ("parcel_biophys_latest", "area_unit_indicator"):  # 0010, 0011 again
            assert conn.execute(text(f"SELECT count(*) FROM {view}")).scalar() == 0


def test_replaying_a_batch_leaves_every_table_unchanged(engine: Engine) -> None:
    scene = scene_event()
    publish(engine, [scene])
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


PARCELS_AOI = pb.Aoi(name="hesbaye-parcels", kind="parcels", geometry_wkt=AOI.geometry_wkt)
REGION_AOI = pb.Aoi(name="hesbaye-region", kind="region", geometry_wkt=AOI.geometry_wkt)
CROPS = ["maize", "sorghum", "other"]


def publish(engine: Engine, scenes: list[pb.SceneDiscovered]) -> None:
    """What the catalog does before the chain runs: the scenes' AOIs saved, the scenes
    recorded and marked published (one scene_processing row per indicator)."""
    aois = {s.aoi.name: s.aoi for s in scenes}
    save_subscriptions(engine, [Subscription(aoi) for aoi in aois.values()])
    record_scenes(engine, scenes)
    mark_published(engine, scenes)


def _published(engine: Engine, aoi: pb.Aoi) -> pb.SceneDiscovered:
    scene = scene_event()
    scene.aoi.CopyFrom(aoi)
    publish(engine, [scene])
    return scene


def _parcels(engine: Engine, declared: list[str | None]) -> list[int]:
    """Small parcels lpis-0.. of the parcels AOI with these declared crops; their ids."""
    square = shapely.from_wkt(
        "POLYGON ((5.32 50.63, 5.321 50.63, 5.321 50.631, 5.32 50.631, 5.32 50.63))"
    )
    records = [ParcelRecord(f"lpis-{i}", square, crop) for i, crop in enumerate(declared)]
    load_parcels(engine, PARCELS_AOI.name, records)
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM parcel ORDER BY id"))]


def crop_batch(
    scene: pb.SceneDiscovered,
    parcel_ids: list[int],
    indicator: str = "crop_type",
    observations: int = 7,
) -> pb.PredictionBatch:
    batch = prediction_batch(scene, indicator, classes=CROPS, season="2020-11-01")
    for i, pid in enumerate(parcel_ids):
        probabilities = [0.1, 0.1, 0.1]
        probabilities[i % 3] = 0.8
        batch.predictions.append(
            pb.Prediction(
                entity_id=str(pid),
                class_code=i % 3,
                confidence=0.8,
                probabilities=probabilities,
                observations=observations,
                season_days=212,
            )
        )
    return batch


def test_parcel_biophysics_are_stored_once_per_parcel_and_pass(engine: Engine) -> None:
    scene = _published(engine, PARCELS_AOI)
    ids = _parcels(engine, [None, None])
    names = [f"{v}_{s}" for s in ("mean", "median") for v in ("lai", "ccc", "fcover")]
    batch = prediction_batch(scene, "parcel_biophysics", season="2020-11-01", value_names=names)
    for k, pid in enumerate(ids):
        values = [2.5 + k, 1.5, 0.6, 2.4 + k, 1.4, 0.5]  # in the order of `names`
        batch.predictions.append(pb.Prediction(entity_id=str(pid), values=values, observations=40))
    write(engine, rows_for(batch))
    before = table_checksum(engine, "parcel_biophys")
    write(engine, rows_for(batch))
    assert table_checksum(engine, "parcel_biophys") == before
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT lai_mean, lai_median, ccc_mean, fcover_mean, pixels, season "
                "FROM parcel_biophys ORDER BY parcel_id"
            )
        ).all()
    assert [tuple(r[:5]) for r in rows] == [
        (2.5, 2.4, 1.5, pytest.approx(0.6), 40),
        (3.5, 3.4, 1.5, pytest.approx(0.6), 40),
    ]
    batch.predictions[0].entity_id = "999999"  # not a parcel of this AOI
    with pytest.raises(PoisonError, match="name no entity"):
        write(engine, rows_for(batch))


def test_crop_predictions_are_stored_once_and_read_back_latest(engine: Engine) -> None:
    scene = _published(engine, PARCELS_AOI)
    ids = _parcels(engine, ["maize"] * 3)
    batch = crop_batch(scene, ids)
    write(engine, rows_for(batch))
    before = {t: table_checksum(engine, t) for t in ("parcel_prediction", "scene_processing")}
    write(engine, rows_for(batch))
    assert {t: table_checksum(engine, t) for t in before} == before
    with engine.connect() as conn:
        latest = conn.execute(
            text(
                "SELECT external_id, declared_crop, class_name, observations, season_days, "
                "season FROM parcel_latest ORDER BY external_id"
            )
        ).all()
        status = conn.execute(
            text(
                "SELECT indicator, status, results FROM scene_processing "
                "WHERE indicator = 'crop_type'"
            )
        ).one()
    assert [tuple(r[:5]) for r in latest] == [
        ("lpis-0", "maize", "maize", 7, 212),
        ("lpis-1", "maize", "sorghum", 7, 212),
        ("lpis-2", "maize", "other", 7, 212),
    ]
    assert {r[5].isoformat() for r in latest} == {"2020-11-01"}
    assert tuple(status) == ("crop_type", "stored", 3)


def test_parcels_whose_predicted_crop_disagrees_with_the_declared_one_are_flagged(
    engine: Engine,
) -> None:
    scene = _published(engine, PARCELS_AOI)
    declared = [" Maize ", "201", "999", None, "MAIZE"]  # predicted: maize, sorghum, other, ...
    ids = _parcels(engine, declared)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO crop_class_map VALUES ('201', 'maize')"))
    write(engine, rows_for(crop_batch(scene, ids)))

    def control(threshold: float | None) -> list[tuple[object, ...]]:
        source = "parcel_control" if threshold is None else f"parcel_control_at({threshold})"
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT external_id, expected_class, class_name, flagged, ST_SRID(geom) "
                    f"FROM {source} ORDER BY external_id"
                )
            )
            return [tuple(r) for r in rows]

    assert control(None) == [
        ("lpis-0", "maize", "maize", False, 4326),  # agrees (case and blanks ignored)
        ("lpis-1", "maize", "sorghum", True, 4326),  # register code mapped to maize
        ("lpis-2", None, "other", False, 4326),  # a code the model cannot check
        ("lpis-3", None, "maize", False, 4326),  # nothing declared
        ("lpis-4", "maize", "sorghum", True, 4326),
    ]
    assert [r[3] for r in control(0.9)] == [False] * 5  # confidence 0.8 is under 0.9
    with engine.connect() as conn:

        def since(day: str) -> list[tuple[object, ...]]:
            rows = conn.execute(
                text(
                    "SELECT external_id, expected_class, class_name, flagged, ST_SRID(geom) "
                    f"FROM parcel_control_since('{day}') ORDER BY external_id"
                )
            )
            return [tuple(r) for r in rows]

        assert since("2021-05-25") == control(None)  # the pass of 1 June is in the week
        assert since("2021-06-02") == []
    with engine.connect() as conn:
        classes = conn.execute(
            text("SELECT class_code, class_name FROM model_class ORDER BY class_code")
        ).all()
    assert [tuple(c) for c in classes] == list(enumerate(CROPS))


def test_lcz_shares_of_a_city_sum_to_one(engine: Engine) -> None:
    scene = _published(engine, AOI)
    write(engine, rows_for(predictions(scene, [9, 14, 14, 6])))
    with engine.connect() as conn:
        shares = conn.execute(
            text("SELECT aoi_name, lcz_class, cells, share FROM lcz_share ORDER BY lcz_class")
        ).all()
    assert [tuple(r) for r in shares] == [
        ("hesbaye-demo", 6, 1, 0.25),
        ("hesbaye-demo", 9, 1, 0.25),
        ("hesbaye-demo", 14, 2, 0.5),
    ]


def test_of_two_s1s2_predictions_at_one_instant_the_one_from_more_passes_stays(
    engine: Engine,
) -> None:
    """The demo's S1 and S2 composites share their dates: the S1+S2 prediction of the
    optical pass and that of the radar pass have one key. Whichever comes last, the one
    from more passes stays; a replay of a scene still overwrites its own rows."""
    optical = _published(engine, PARCELS_AOI)
    radar = pb.SceneDiscovered()
    radar.CopyFrom(optical)
    radar.header.scene_id, radar.collection = "WORLDCEREAL_S1_20210601_MONTHLY", "sentinel-1-grd"
    publish(engine, [radar])
    ids = _parcels(engine, ["maize"] * 3)

    def stored() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT scene_id, observations, count(*) OVER () FROM parcel_prediction "
                        "ORDER BY parcel_id"
                    )
                )
            ]

    more, fewer = (
        crop_batch(optical, ids, "crop_type_s1s2", 8),
        crop_batch(radar, ids, "crop_type_s1s2", 7),
    )
    for first, last in ((fewer, more), (more, fewer)):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM parcel_prediction"))
        write(engine, rows_for(first))
        write(engine, rows_for(last))
        assert stored() == [(optical.header.scene_id, 8, 3)] * 3
    fewer.predictions[0].class_code = 2  # kept out by the condition, not refused
    write(engine, rows_for(fewer))
    more.predictions[0].class_code = 2  # the same scene again: overwritten
    write(engine, rows_for(more))
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT class_name FROM parcel_prediction ORDER BY parcel_id LIMIT 1")
            ).scalar()
            == "other"
        )
    fewer.predictions[1].entity_id = "424242"  # kept out, and one of another AOI: refused
    with pytest.raises(PoisonError, match="1 of 3 crop_type_s1s2 rows name no entity"):
        write(engine, rows_for(fewer))


def test_a_revision_replaces_a_later_passs_rows_and_leaves_its_scene_record(
    engine: Engine,
) -> None:
    """An older pass handled late re-predicts the crop type as of a later pass: those rows
    are replaced (from one pass more), and that pass's scene record stays as it was."""
    later = _published(engine, PARCELS_AOI)
    ids = _parcels(engine, ["maize"] * 3)
    write(engine, rows_for(crop_batch(later, ids, observations=7)))

    def record() -> tuple[object, ...]:
        with engine.connect() as conn:
            return tuple(
                conn.execute(
                    text(
                        "SELECT status, results, completed_at FROM scene_processing "
                        "WHERE indicator = 'crop_type'"
                    )
                ).one()
            )

    before = record()
    revision = crop_batch(later, ids[:2], observations=8)
    revision.revision = True
    for p in revision.predictions:
        p.class_code = 2
    write(engine, rows_for(revision))
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT parcel_id, observations, class_name FROM parcel_prediction ORDER BY 1")
        ).all()
    assert [tuple(r) for r in stored] == [
        (ids[0], 8, "other"),
        (ids[1], 8, "other"),
        (ids[2], 7, CROPS[2]),
    ]
    assert record() == before  # 3 results, the first completion time


def test_predictions_of_unknown_parcels_are_poison_and_write_nothing(engine: Engine) -> None:
    scene = _published(engine, PARCELS_AOI)
    with pytest.raises(PoisonError, match="name no entity"):
        write(engine, rows_for(crop_batch(scene, [424242])))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM parcel_prediction")).scalar() == 0
        assert conn.execute(text("SELECT status FROM scene_processing")).scalar() == "discovered"


def area_batches(scene: pb.SceneDiscovered) -> tuple[pb.PredictionBatch, pb.PredictionBatch]:
    """The land-cover and the biophysics batch of a region's pass."""
    land = prediction_batch(
        scene,
        "land_cover",
        REGION_AOI,
        value_names=["tree", "built_up", "cropland", "pixels_share"],
    )
    land.predictions.append(pb.Prediction(entity_id=REGION_AOI.name, values=[0.2, 0.1, 0.6, 1]))
    bio = prediction_batch(
        scene,
        "biophysics",
        REGION_AOI,
        value_names=[f"{v}_{s}" for s in ("mean", "median") for v in ("lai", "ccc", "fcover")]
        + ["valid_fraction"],
    )
    bio.predictions.append(
        pb.Prediction(entity_id=REGION_AOI.name, values=[2.0, 1.0, 0.5, 2.1, 0.9, 0.4, 0.95])
    )
    return land, bio


def test_land_cover_and_biophysics_fill_one_row_per_pass(engine: Engine) -> None:
    land, bio = area_batches(_published(engine, REGION_AOI))
    for batch in (bio, land, bio):  # either order, replays included
        write(engine, rows_for(batch))
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT area_key, tree_fraction, cropland_fraction, water_fraction, "
                "classified_share, lai_mean, fcover_median, valid_pixel_share, "
                "landcover_model, biophys_model FROM landcover_indicator"
            )
        ).one()
        statuses = dict(conn.execute(text("SELECT indicator, status FROM scene_processing")).all())
    assert tuple(row) == pytest.approx(
        ("hesbaye-region", 0.2, 0.6, None, 1.0, 2.0, 0.4, 0.95, "landcover_tae", "biophys_prosail")
    )
    assert statuses == {"land_cover": "stored", "biophysics": "stored"}


def test_area_values_of_unknown_names_are_poison() -> None:
    batch = prediction_batch(scene_event(), "land_cover", REGION_AOI, value_names=["grassland"])
    batch.predictions.append(pb.Prediction(entity_id="x", values=[0.3]))
    with pytest.raises(PoisonError, match="unknown values"):
        rows_for(batch)


def test_the_read_only_role_reads_and_cannot_write(stack: StackConfig, engine: Engine) -> None:
    scene = _published(engine, AOI)
    write(engine, rows_for(predictions(scene, [9, 14])))
    reader = create_engine(stack.reader_database_url)
    try:
        with reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM lcz_latest")).scalar() == 2
            assert conn.execute(text("SELECT count(*) FROM parcel_latest")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM parcel_biophys_latest")).scalar() == 0
        for statement in (
            "INSERT INTO aoi (name, kind, geom) VALUES ('x', 'city', "
            "ST_GeomFromText('POINT (5 50)', 4326))",
            "UPDATE lcz_cell SET lcz_class = 1",
            "DELETE FROM scene_processing",
            "TRUNCATE lcz_cell",
            "CREATE TABLE mine (id int)",
            "DROP VIEW parcel_latest",
        ):
            with reader.begin() as conn, pytest.raises(ProgrammingError, match=r"denied|owner"):
                conn.execute(text(statement))
    finally:
        reader.dispose()
    with engine.connect() as conn:  # untouched
        assert conn.execute(text("SELECT count(*) FROM lcz_cell")).scalar() == 2


def test_the_services_role_writes_rows_but_not_the_schema(stack: StackConfig) -> None:
    writer = create_engine(stack.writer_database_url)
    try:
        scene = _published(writer, AOI)  # the catalog's writes
        write(writer, rows_for(predictions(scene, [9])))  # the store's, COPY included
        for statement in ("CREATE TABLE mine (id int)", "DROP TABLE lcz_cell"):
            with writer.begin() as conn, pytest.raises(ProgrammingError, match=r"denied|owner"):
                conn.execute(text(statement))
        with writer.connect() as conn:
            supers = conn.execute(
                text("SELECT rolname FROM pg_roles WHERE rolsuper AND rolname LIKE 'revisit%'")
            ).all()
        assert supers == []
    finally:
        writer.dispose()
