"""The handlers chained without Kafka on the demo's real passes: catalog → preprocess →
inference (the port, in process) → store rows. The classes equal the Keras model's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from revisit_catalog.handler import Published, discover
from revisit_catalog.registry import load_subscriptions
from revisit_catalog.sources import StaticSource
from revisit_catalog.stac import version_of
from revisit_cli.demo_data import BANDS as DEMO_BANDS
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.payload import PayloadStore
from revisit_inference.handler import handle_observation, handle_observations
from revisit_models.lcz import Sen2LczDrop, load_keras_weights
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LczGrid
from revisit_store.handler import rows_for
from tests.conftest import AOI_FILE, LCZ_WEIGHTS


class InProcessLcz:
    model_name = "lcz_sen2lcz_drop"

    def __init__(self) -> None:
        self.model = load_keras_weights(Sen2LczDrop(), LCZ_WEIGHTS)

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        with torch.no_grad():
            return self.model(torch.from_numpy(batch)).numpy(), "in-process"


def published_as(scene: pb.SceneDiscovered) -> Published:
    return Published(
        scene.header.scene_id, version_of(scene), scene.header.acquired_at.ToDatetime(tzinfo=UTC)
    )


@pytest.fixture(scope="module")
def scenes(demo_scenes: list[pb.SceneDiscovered]) -> list[pb.SceneDiscovered]:
    return demo_scenes


def test_catalog_finds_every_monthly_pass_once(
    demo_aoi_scenes: dict[str, list[pb.SceneDiscovered]], demo_catalog: Path
) -> None:
    for aoi, found in demo_aoi_scenes.items():
        # the parcels AOI also watches Sentinel-1: a radar composite a month as well
        passes = 24 if aoi == "hesbaye-parcels" else 12
        assert len(found) == passes
        assert len({s.header.scene_id for s in found}) == passes
    scenes = [s for found in demo_aoi_scenes.values() for s in found]
    again = discover(
        StaticSource(str(demo_catalog)).items(),
        load_subscriptions(AOI_FILE),
        # everything already published, in the same version
        lambda keys: {(s.acquisition_key, s.aoi.name): published_as(s) for s in scenes},
        datetime.now(UTC),
    )
    assert again.scenes == []
    first = scenes[0]
    assert first.tile_id == "31UFS" and first.aoi.kind == "city"
    assert {b.band for b in first.bands} == set(DEMO_BANDS)  # the cube has no B8A
    assert all(b.scale == 1e-4 and b.offset == 0.0 and b.nodata == 65535 for b in first.bands)
    assert all(Path(b.href).is_absolute() and Path(b.href).exists() for b in first.bands)


def test_chain_reproduces_keras_classes(
    scenes: list[pb.SceneDiscovered], tmp_path: Path, lcz_parity: dict[str, np.ndarray]
) -> None:
    store = PayloadStore(tmp_path)
    lcz = InProcessLcz()
    stored: list[int] = []
    empty = []
    for scene in scenes:
        (observation,) = handle_scene(scene, store, LczGrid())
        assert isinstance(observation.event, pb.ObservationBatch)
        assert "B8A missing: B08 used in its place" in observation.event.notes
        (prediction,) = handle_observation(observation.event, store, lcz)
        assert isinstance(prediction.event, pb.PredictionBatch)
        rows = rows_for(prediction.event)
        if rows.outcome.status == "no_valid_observation":
            empty.append(scene.header.scene_id)
        stored += rows.column("lcz_class") if rows.rows else []
    # December 2020 and January 2021 are entirely "no data" in the cube.
    assert empty == [
        "WORLDCEREAL_S2_31UFS_20201201_MONTHLY",
        "WORLDCEREAL_S2_31UFS_20210101_MONTHLY",
    ]
    keras_classes = lcz_parity["keras_probabilities"].argmax(1) + 1
    assert stored == keras_classes.tolist()


def test_observation_of_unknown_kind_is_poison(tmp_path: Path) -> None:
    batch = pb.ObservationBatch(kind="pixel_sets")
    with pytest.raises(PoisonError, match="no model yet"):
        handle_observation(batch, PayloadStore(tmp_path), InProcessLcz())


def test_observation_of_a_kind_without_model_yet_is_skipped(tmp_path: Path) -> None:
    batch = pb.ObservationBatch(kind="parcel_pixels")
    assert handle_observation(batch, PayloadStore(tmp_path), InProcessLcz()) == []


class CountingLcz(InProcessLcz):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        self.sizes.append(len(batch))
        return super().predict(batch)


def test_batches_of_one_poll_share_model_calls(
    scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    """The 12 passes' observations handled together: one model call for their 90
    patches, and exactly the outputs of handling them one by one."""
    store = PayloadStore(tmp_path)
    observations = []
    for scene in scenes:
        (out,) = handle_scene(scene, store, LczGrid())
        assert isinstance(out.event, pb.ObservationBatch)
        observations.append(out.event)
    alone, together = CountingLcz(), CountingLcz()
    one_by_one = [handle_observation(b, store, alone) for b in observations]
    grouped = handle_observations(observations, store, together)
    assert together.sizes == [90] and len(alone.sizes) == 10
    assert [len(outs) for outs in grouped] == [len(outs) for outs in one_by_one]
    for (mine,), (theirs,) in zip(grouped, one_by_one, strict=True):
        a, b = mine.event, theirs.event
        assert isinstance(a, pb.PredictionBatch) and isinstance(b, pb.PredictionBatch)
        assert (a.header.scene_id, a.aoi, a.no_valid_observation, a.model_name) == (
            b.header.scene_id,
            b.aoi,
            b.no_valid_observation,
            b.model_name,
        )
        assert [(p.entity_id, p.class_code) for p in a.predictions] == [
            (p.entity_id, p.class_code) for p in b.predictions
        ]
        for p, q in zip(a.predictions, b.predictions, strict=True):
            assert np.allclose(p.probabilities, q.probabilities, atol=1e-5)
