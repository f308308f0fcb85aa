"""Real inputs for every model of the project, as named arrays in its signature order:
WorldCereal parcels and pixels, the eo-learn NDVI series (tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from revisit_cli.stack import REPO_ROOT
from revisit_models.landcover import load_patch, window_inputs, year_slice
from revisit_models.pixelset_data import collate, load_dataset
from revisit_models.worldcereal import read_cube

WORLDCEREAL = REPO_ROOT / "data" / "worldcereal"
EOLEARN = REPO_ROOT / "data" / "eo-learn"
Inputs = dict[str, npt.NDArray[np.float32]]


def latest_version(model_home: Path) -> Path:
    """A model's highest version directory (`<name>/<version>/`), the one Triton serves."""
    versions = sorted(
        (p for p in model_home.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not versions:
        raise FileNotFoundError(f"no version of {model_home.name} in {model_home.parent}")
    return versions[-1]


def parcel_inputs(directory: Path, fusion: bool, until_day: float, count: int = 40) -> Inputs:
    """Pixel sets of real parcels, the season cut at `until_day` (the season so far)."""
    data = load_dataset(directory, "sampling_label" if "points" in str(directory) else None)
    batch = collate(data, list(range(count)), np.random.default_rng(1), 64, [until_day] * count)
    names = ["pixels", "pixel_mask", "positions", "geomfeat"]
    if fusion:
        names += ["s1", "s1_valid", "s1_positions"]
    return {n: t.numpy() for n, t in zip(names, batch.inputs(fusion), strict=True)}


def dense_pixel_sets(inputs: Inputs, pixels: int = 64, seed: int = 0) -> Inputs:
    """The pixel sets as the preprocess service sends them: every one of the `pixels`
    slots of an observed date holds one of the parcel's valid pixels (drawn with
    replacement when it has fewer, `revisit_preprocess.pixelsets`), none is padding."""
    rng = np.random.default_rng(seed)
    x, mask = inputs["pixels"], inputs["pixel_mask"]
    batch, length, channels, _ = x.shape
    dense = np.zeros((batch, length, channels, pixels), np.float32)
    observed = np.zeros((batch, length, pixels), np.float32)
    for b in range(batch):
        for t in range(length):
            valid = np.flatnonzero(mask[b, t])
            if valid.size:
                chosen = rng.choice(valid, pixels, replace=valid.size < pixels)
                dense[b, t], observed[b, t] = x[b, t][:, chosen], 1.0
    return {**inputs, "pixels": dense, "pixel_mask": observed}


def ndvi_series(count: int = 64) -> Inputs:
    """Real eo-learn NDVI series of `count` pixels over 2017, cloudy dates masked."""
    patch = load_patch(EOLEARN)
    mask = np.zeros(patch.ndvi.shape[1:], bool)
    mask.reshape(-1)[np.arange(0, mask.size, mask.size // count)[:count]] = True
    ndvi, clear = patch.ndvi[:, mask].T, ~patch.cloud[:, mask].T
    window = window_inputs(
        ndvi, clear, patch.days, year_slice(patch.dates, "2017-01-01", "2018-01-01")
    )
    return {
        n: t.numpy() for n, t in zip(("ndvi", "valid", "positions"), window.inputs(), strict=True)
    }


def reflectance(count: int = 64) -> Inputs:
    """Real WorldCereal reflectances of June 2021 in the production band order."""
    cube = read_cube(WORLDCEREAL / "worldcereal_preprocessed_inputs.nc")
    dn, month = cube.dn, [d.month for d in cube.dates].index(6)
    order = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B08", "B11", "B12")  # B8A := B08
    stack = np.stack([dn[b][month].reshape(-1)[:count] for b in order], axis=1)
    angles = np.tile(np.array([[30.0, 5.0, 90.0]], np.float32), (count, 1))
    return {"reflectance": (stack / 10000.0).astype(np.float32), "angles": angles}


def lcz_patches() -> Inputs:
    """The 90 real 32×32 patches of the demo (tests/fixtures/lcz_parity.npz), reflectance."""
    with np.load(REPO_ROOT / "tests" / "fixtures" / "lcz_parity.npz") as data:
        return {"patches": (data["dn"].astype(np.float32) / 10000.0)}


def real_inputs(name: str, worldcereal_datasets: Path) -> list[Inputs]:
    if name.startswith("psetae"):
        fusion = "s1s2" in name
        source = worldcereal_datasets / ("cube" if "cropland" in name else "points")
        # three requests: 4 months, 8 months and the whole season (different T)
        return [parcel_inputs(source, fusion, day) for day in (100.0, 220.0, 400.0)]
    if name.startswith("landcover"):
        series = ndvi_series()
        return [series, {k: v[:, :10] for k, v in series.items()}]  # a full year, a spring
    if name.startswith("biophys"):
        return [reflectance()]
    if name.startswith("lcz"):
        return [lcz_patches()]
    raise AssertionError(f"no real inputs for {name}: add them to this test")


class LocalModel:
    """A trained model's TorchScript called like Triton: named inputs in, (output, version)."""

    def __init__(self, model_dir: Path) -> None:
        import torch

        from revisit_common.cards import load_card

        self.card = load_card(model_dir)
        self.model_name = self.card.name
        self.model = torch.jit.load(str(model_dir / "model.pt")).eval()
        self.calls = 0

    def infer(self, inputs: Inputs, output: str) -> tuple[npt.NDArray[np.float32], str]:
        import torch

        self.calls += 1
        with torch.inference_mode():
            tensors = [torch.from_numpy(inputs[t.name]) for t in self.card.inputs]
            result: npt.NDArray[np.float32] = self.model(*tensors).numpy()
        return result, self.card.version
