"""Fixtures shared by every test: real sample data from the repository (never downloaded)
and, for integration and end-to-end tests, one real stack per session: Kafka,
PostgreSQL + PostGIS and Triton on free ports, serving the project's model repository."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine, create_engine, text

from revisit_catalog.handler import discover
from revisit_catalog.registry import load_subscriptions
from revisit_catalog.sources import StaticSource
from revisit_cli.demo_data import build_catalog, demo_parcels
from revisit_cli.models import build_models
from revisit_cli.stack import REPO_ROOT, StackConfig, down, free_ports, up
from revisit_common import events_pb2 as pb
from revisit_common.db.migrate import upgrade
from revisit_common.events import SENTINEL1
from revisit_common.payload import PayloadStore
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LczGrid
from revisit_preprocess.pixelsets import Parcel, PixelSetConfig
from tests.eolearn_scenes import EoLearnPatch, load_patch, write_scenes

FIXTURES = Path(__file__).parent / "fixtures"
LCZ_WEIGHTS = REPO_ROOT / "data" / "so2sat-lcz" / "sen2lcz_drop_32_weights.best.hdf5"
AOI_FILE = REPO_ROOT / "infra" / "demo" / "aoi.geojson"


@pytest.fixture(scope="session")
def lcz_parity() -> dict[str, np.ndarray]:
    """Real patches of the WorldCereal cube and the original Keras model's outputs."""
    with np.load(FIXTURES / "lcz_parity.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def shared_tmp() -> Iterator[Path]:
    """A session temp dir that other system users (postgres) can traverse."""
    path = Path(tempfile.mkdtemp(prefix="revisit-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_catalog(shared_tmp: Path) -> Path:
    """The demo's static STAC catalog (COGs of the 12 real monthly composites)."""
    return build_catalog(shared_tmp / "demo")


@pytest.fixture(scope="session")
def demo_aoi_scenes(demo_catalog: Path) -> dict[str, list[pb.SceneDiscovered]]:
    """The catalog's scene events for each demo AOI (city, parcels, region), nothing
    published before."""
    found = discover(
        StaticSource(str(demo_catalog)).items(),
        load_subscriptions(AOI_FILE),
        lambda keys: {},
        datetime.now(UTC),
    )
    assert not found.rejected
    by_aoi: dict[str, list[pb.SceneDiscovered]] = {}
    for scene in found.scenes:
        by_aoi.setdefault(scene.aoi.name, []).append(scene)
    return by_aoi


@pytest.fixture(scope="session")
def demo_scenes(demo_aoi_scenes: dict[str, list[pb.SceneDiscovered]]) -> list[pb.SceneDiscovered]:
    """The scene events of the demo's city AOI (`hesbaye-demo`)."""
    return demo_aoi_scenes["hesbaye-demo"]


@pytest.fixture(scope="session")
def region_scenes(
    demo_aoi_scenes: dict[str, list[pb.SceneDiscovered]],
) -> list[pb.SceneDiscovered]:
    """The scene events of the demo's region AOI (`hesbaye-region`, season from 1 Nov)."""
    return demo_aoi_scenes["hesbaye-region"]


@dataclass(frozen=True)
class Season:
    """A parcels AOI's season through the real preprocess handler, in one payload store."""

    store: PayloadStore
    optical: list[pb.ObservationBatch]  # in publication order
    radar: list[pb.ObservationBatch]
    handled: list[pb.ObservationBatch]  # both, in the order preprocess handled them


@pytest.fixture(scope="session")
def demo_parcel_season(
    demo_aoi_scenes: dict[str, list[pb.SceneDiscovered]], tmp_path_factory: pytest.TempPathFactory
) -> Season:
    """The demo parcels AOI's 24 passes through the real preprocess handler (16 pixels a
    set) in the order the catalog publishes them: by acquisition, a month's Sentinel-2
    pass before its Sentinel-1 one (the composites share their dates; a parcels AOI's
    passes share one partition)."""
    scenes = demo_aoi_scenes["hesbaye-parcels"]
    assert [s.sensor for s in scenes[:2]] == ["sentinel-2", SENTINEL1]
    return _preprocessed_season(scenes, PayloadStore(tmp_path_factory.mktemp("payloads")))


@pytest.fixture(scope="session")
def late_optical_season(
    demo_aoi_scenes: dict[str, list[pb.SceneDiscovered]], tmp_path_factory: pytest.TempPathFactory
) -> Season:
    """The same 24 passes month by month, each month's Sentinel-1 pass before its
    Sentinel-2 one: optical passes that arrive after the radar pass of their date, as
    L2A products often do."""
    scenes = sorted(
        demo_aoi_scenes["hesbaye-parcels"],
        key=lambda s: (s.header.acquired_at.ToDatetime(), s.sensor != SENTINEL1),
    )
    return _preprocessed_season(scenes, PayloadStore(tmp_path_factory.mktemp("late")))


#: The demo passes' month that `late_pass_season` handles late, and the month after which
LATE_MONTH, HANDLED_AFTER = 2, 5


@pytest.fixture(scope="session")
def late_pass_season(
    demo_aoi_scenes: dict[str, list[pb.SceneDiscovered]], tmp_path_factory: pytest.TempPathFactory
) -> Season:
    """The catalog's order, but February 2021's Sentinel-2 pass handled after May's
    passes: a pass published late, after the passes dated after it."""
    scenes = list(demo_aoi_scenes["hesbaye-parcels"])
    (late,) = [
        s
        for s in scenes
        if s.sensor != SENTINEL1 and s.header.acquired_at.ToDatetime().month == LATE_MONTH
    ]
    scenes.remove(late)
    months = [s.header.acquired_at.ToDatetime().month for s in scenes]
    scenes.insert(len(months) - months[::-1].index(HANDLED_AFTER), late)
    return _preprocessed_season(scenes, PayloadStore(tmp_path_factory.mktemp("late-pass")))


def _preprocessed_season(scenes: list[pb.SceneDiscovered], store: PayloadStore) -> Season:
    """The scenes through the real preprocess handler in this order (16 pixels a set)."""
    parcels = [Parcel(i + 1, r.geometry) for i, r in enumerate(demo_parcels())]
    handled = []
    for scene in scenes:
        (out,) = handle_scene(
            scene, store, LczGrid(), lambda aoi, fp: parcels, PixelSetConfig(pixels=16)
        )
        assert out.key == b"aoi:hesbaye-parcels"  # both sensors on one partition
        assert isinstance(out.event, pb.ObservationBatch)
        handled.append(out.event)
    optical = [e for e in handled if e.kind == "parcel_pixels"]
    return Season(store, optical, [e for e in handled if e.kind == "parcel_s1"], handled)


@pytest.fixture(scope="session")
def demo_poll(
    demo_parcel_season: Season, region_scenes: list[pb.SceneDiscovered]
) -> tuple[PayloadStore, list[pb.ObservationBatch]]:
    """A poll's worth of observations: the parcels AOI's 24 passes and the region's 12,
    all in one payload store."""
    events = [*demo_parcel_season.optical, *demo_parcel_season.radar]
    for scene in region_scenes:
        (out,) = handle_scene(scene, demo_parcel_season.store, LczGrid())
        assert isinstance(out.event, pb.ObservationBatch)
        events.append(out.event)
    return demo_parcel_season.store, events


@pytest.fixture(scope="session")
def worldcereal_datasets(shared_tmp: Path) -> Path:
    """The repository's WorldCereal data in the PSE-TAE layout: points/ and cube/."""
    from revisit_models.worldcereal import convert_cube, convert_extractions

    out, data = shared_tmp / "worldcereal-psetae", REPO_ROOT / "data" / "worldcereal"
    if not out.exists():
        convert_extractions(data / "test_public_extractions.parquet", out / "points", log=str)
        convert_cube(
            data / "worldcereal_preprocessed_inputs.nc",
            data / "worldcereal_cropland_classification.nc",
            out / "cube",
            log=str,
        )
    return out


@pytest.fixture(scope="session")
def eolearn_patch() -> EoLearnPatch:
    """The real eo-learn patch: 68 dates of NDVI and cloud masks, 88 real parcels."""
    return load_patch()


@pytest.fixture(scope="session")
def eolearn_scenes(eolearn_patch: EoLearnPatch, shared_tmp: Path) -> list[pb.SceneDiscovered]:
    """One Sentinel-2 scene per date of the eo-learn patch (COGs, SCL from the masks)."""
    return write_scenes(eolearn_patch, shared_tmp / "eolearn")


def stack_config_on_free_ports(state_dir: Path, **settings: object) -> StackConfig:
    """A stack configuration with every component on a free port."""
    names = (
        "kafka",
        "kafka_controller",
        "postgres",
        "triton_http",
        "triton_grpc",
        "triton_metrics",
        "prometheus",
        "postgres_exporter",
    )
    ports = {f"{name}_port": port for name, port in zip(names, free_ports(len(names)), strict=True)}
    return StackConfig(state_dir=state_dir, **ports, **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(shared_tmp: Path) -> Iterator[StackConfig]:
    config = stack_config_on_free_ports(shared_tmp / "stack")
    build_models(config.triton_model_repository)
    try:
        up(config)
        upgrade(config.database_url)
        yield config
    finally:
        down(config)


def empty_tables(engine: Engine) -> None:
    """Every row of every table gone, ids restarted (the schema stays)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE lcz_cell, parcel_prediction, parcel_biophys, landcover_indicator, "
                "scene_processing, "
                "catalog_cursor, parcel, area_unit, scene, aoi, model_class, crop_class_map "
                "RESTART IDENTITY"
            )
        )


@pytest.fixture
def engine(stack: StackConfig) -> Iterator[Engine]:
    """The stack's database with empty tables (the schema stays)."""
    engine = create_engine(stack.database_url)
    empty_tables(engine)
    yield engine
    engine.dispose()


def commit_from_outside(
    consumer: KafkaConsumer, offsets: dict[TopicPartition, int], timeout_s: float = 60
) -> None:
    """Commit `offsets` for the consumer's group from outside it, its services stopped. A
    member the broker has not expired yet rejects such a commit until its session times
    out (REVISIT_KAFKA_SESSION_TIMEOUT_MS): a stopped service is a static member, which
    never leaves, and a dynamic member's leave request can be lost around a broker
    restart."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def consecutive_free_ports(count: int) -> int:
    """A base port such that base .. base+count-1 are free now (below the ephemeral
    range, see `free_ports`)."""
    return free_ports(count, consecutive=True)[0]
