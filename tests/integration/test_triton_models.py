"""Every trained model answers on the real tritonserver exactly as its TorchScript file
does in process, on real inputs (WorldCereal parcels and pixels, the eo-learn series)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from revisit_cli.models import TRAINED
from revisit_cli.stack import REPO_ROOT, StackConfig
from revisit_common.errors import PoisonError
from revisit_inference.triton import TritonModel
from revisit_models.artefact import ModelCard, load_card
from revisit_models.pixelset_data import collate, load_dataset
from revisit_models.worldcereal import read_cube

pytestmark = pytest.mark.integration

WORLDCEREAL = REPO_ROOT / "data" / "worldcereal"
EOLEARN = REPO_ROOT / "data" / "eo-learn"
Inputs = dict[str, npt.NDArray[np.float32]]


def _parcels(directory: Path, fusion: bool, until_day: float, count: int = 40) -> Inputs:
    """Pixel sets of real parcels, the season cut at `until_day` (the season so far)."""
    data = load_dataset(directory, "sampling_label" if "points" in str(directory) else None)
    batch = collate(data, list(range(count)), np.random.default_rng(1), 64, [until_day] * count)
    names = ["pixels", "pixel_mask", "positions", "geomfeat"]
    if fusion:
        names += ["s1", "s1_valid", "s1_positions"]
    return {n: t.numpy() for n, t in zip(names, batch.inputs(fusion), strict=True)}


def _ndvi_series(count: int = 64) -> Inputs:
    """Real eo-learn NDVI series of `count` pixels over 2017, cloudy dates masked."""
    ndvi = np.load(EOLEARN / "NDVI.npy")[..., 0]
    clouds = np.load(EOLEARN / "CLM.npy")[..., 0]
    dates = [
        date.fromisoformat(d[:10]) for d in json.loads((EOLEARN / "timestamps.json").read_text())
    ]
    keep = [i for i, d in enumerate(dates) if d.year == 2017]
    rows, cols = np.unravel_index(np.arange(0, 101 * 100, 101 * 100 // count)[:count], (101, 100))
    valid = (clouds[keep][:, rows, cols] == 0).T.astype(np.float32)  # (N, T)
    values = np.where(valid > 0, ndvi[keep][:, rows, cols].T, 0.0).astype(np.float32)
    days = np.array([(dates[i] - dates[keep[0]]).days for i in keep], np.float32)
    return {"ndvi": values, "valid": valid, "positions": np.tile(days, (count, 1))}


def _reflectance(count: int = 64) -> Inputs:
    """Real WorldCereal reflectances of June 2021 in the production band order."""
    cube = read_cube(WORLDCEREAL / "worldcereal_preprocessed_inputs.nc")
    dn, month = cube.dn, [d.month for d in cube.dates].index(6)
    order = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B08", "B11", "B12")  # B8A := B08
    stack = np.stack([dn[b][month].reshape(-1)[:count] for b in order], axis=1)
    angles = np.tile(np.array([[30.0, 5.0, 90.0]], np.float32), (count, 1))
    return {"reflectance": (stack / 10000.0).astype(np.float32), "angles": angles}


def _inputs(name: str, worldcereal_datasets: Path) -> list[Inputs]:
    if name.startswith("psetae"):
        fusion = "s1s2" in name
        source = worldcereal_datasets / ("cube" if "cropland" in name else "points")
        # three requests: 4 months, 8 months and the whole season (different T)
        return [_parcels(source, fusion, day) for day in (100.0, 220.0, 400.0)]
    if name.startswith("landcover"):
        series = _ndvi_series()
        return [series, {k: v[:, :10] for k, v in series.items()}]  # a full year, a spring
    if name.startswith("biophys"):
        return [_reflectance()]
    raise AssertionError(f"no real inputs for {name}: add them to this test")


def _trained() -> list[Path]:
    return sorted(p.parent for p in TRAINED.glob("*/*/card.json"))


def test_every_trained_model_is_in_the_repository(stack: StackConfig) -> None:
    names = {load_card(p).name for p in _trained()}
    assert {"psetae_s2", "psetae_s1s2", "landcover_tae", "biophys_prosail"} <= names
    for name in names:
        assert (stack.triton_model_repository / name / "config.pbtxt").exists()


@pytest.mark.parametrize("model_dir", _trained(), ids=lambda p: f"{p.parent.name}-v{p.name}")
def test_triton_equals_torchscript_on_real_inputs(
    stack: StackConfig, worldcereal_datasets: Path, model_dir: Path
) -> None:
    card: ModelCard = load_card(model_dir)
    local = torch.jit.load(str(model_dir / "model.pt")).eval()
    remote = TritonModel(stack.triton_grpc_url, card.name, max_batch=card.max_batch_size)
    output = card.outputs[0].name
    for request in _inputs(card.name, worldcereal_datasets):
        assert list(request) == [t.name for t in card.inputs]
        served, version = remote.infer(request, output)
        with torch.inference_mode():
            expected = local(*[torch.from_numpy(request[t.name]) for t in card.inputs]).numpy()
        assert version == card.version
        assert (
            served.shape
            == expected.shape
            == (len(next(iter(request.values()))), *card.outputs[0].dims)
        )
        assert np.abs(served - expected).max() < 1e-5
        if card.task == "classification":
            assert (served.argmax(1) == expected.argmax(1)).all()


def test_a_pixel_set_with_wrong_bands_is_rejected(
    stack: StackConfig, worldcereal_datasets: Path
) -> None:
    request = _parcels(worldcereal_datasets / "points", False, 400.0, count=2)
    request["pixels"] = request["pixels"][:, :, :9]  # 9 bands instead of 10
    with pytest.raises(PoisonError, match="rejected the input"):
        TritonModel(stack.triton_grpc_url, "psetae_s2").infer(request, "probabilities")
