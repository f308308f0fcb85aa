"""The PROSAIL biophysical inversion: spectral responses, simulation, targets, the network
and its TorchScript export, a short training run, and the committed model on the real
WorldCereal cube."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from revisit_cli.stack import REPO_ROOT
from revisit_common.cards import load_card
from revisit_models.biophys import (
    ANGLES,
    MODEL_BANDS,
    OUTPUT_MAX,
    S2_BANDS,
    VARIABLES,
    WAVELENGTHS,
    BiophysNet,
    convolve,
    fcover,
    load_srf,
    nadir_projection,
    read_worldcereal,
    simulate,
    solar_zenith,
    train_biophys,
)

REPO = REPO_ROOT
SRF_DIR = REPO / "data" / "pyrsr"
WORLDCEREAL_DIR = REPO / "data" / "worldcereal"
COMMITTED = REPO / "data" / "models" / "biophys_prosail" / "1"


@pytest.fixture(scope="module")
def srf() -> npt.NDArray[np.float64]:
    return load_srf(SRF_DIR)


def test_srf_rows_are_normalised_and_nonnegative(srf: npt.NDArray[np.float64]) -> None:
    assert srf.shape == (len(S2_BANDS), len(WAVELENGTHS))
    assert np.allclose(srf.sum(axis=1), 1.0)
    assert (srf >= 0).all()
    s2b = load_srf(SRF_DIR, sensor="Sentinel-2B")
    assert np.allclose(s2b.sum(axis=1), 1.0)
    assert not np.allclose(s2b, srf)


def test_constant_spectrum_convolves_to_the_constant(srf: npt.NDArray[np.float64]) -> None:
    spectra = np.full((2, len(WAVELENGTHS)), 0.37)
    assert np.allclose(convolve(spectra, srf), 0.37)


def test_narrow_feature_lands_in_its_band(srf: npt.NDArray[np.float64]) -> None:
    # A 5 nm spike at 665 nm (red, B04) and one at 1610 nm (SWIR, B11).
    for centre, band in ((665, "B04"), (1610, "B11"), (740, "B06")):
        spectrum = np.zeros(len(WAVELENGTHS))
        spectrum[np.abs(WAVELENGTHS - centre) <= 2] = 1.0
        bands = convolve(spectrum, srf)
        assert bands.argmax() == S2_BANDS.index(band)
        assert bands[S2_BANDS.index(band)] > 0.05
        others = np.delete(bands, S2_BANDS.index(band))
        assert (others == 0).all()


def test_band_centroids_are_where_esa_says(srf: npt.NDArray[np.float64]) -> None:
    centroids = dict(zip(S2_BANDS, (srf * WAVELENGTHS).sum(axis=1), strict=True))
    expected = {"B02": 492, "B04": 665, "B08": 833, "B8A": 865, "B11": 1614, "B12": 2202}
    for band, nm in expected.items():
        assert abs(centroids[band] - nm) < 3, (band, centroids[band])


def test_simulation_is_deterministic_and_in_range() -> None:
    first = simulate(24, 7, 2, SRF_DIR, log=lambda _: None)
    again = simulate(24, 7, 1, SRF_DIR, log=lambda _: None)
    other = simulate(24, 8, 1, SRF_DIR, log=lambda _: None)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    reflectance, angles, targets = first
    assert reflectance.shape == (24, len(S2_BANDS))
    assert angles.shape == (24, len(ANGLES))
    assert targets.shape == (24, len(VARIABLES))
    assert (reflectance >= 0).all() and (reflectance <= 1).all()
    assert (angles[:, 0] >= 20).all() and (angles[:, 0] <= 75).all()
    assert (angles[:, 1] >= 0).all() and (angles[:, 1] <= 10).all()
    lai, ccc, cover = targets.T
    assert (lai >= 0).all() and (lai <= OUTPUT_MAX[0]).all()
    assert (ccc >= 0).all() and (ccc <= OUTPUT_MAX[1]).all()
    assert (cover >= 0).all() and (cover <= 1).all()
    # Vegetation: NIR (B08) above red (B04) for the leafier canopies.
    leafy = lai > 1
    assert (reflectance[leafy, 6] > reflectance[leafy, 2]).all()


def test_fcover_is_zero_without_leaves_and_grows_with_lai() -> None:
    lai = np.linspace(0, 8, 33)
    for ala in (30.0, 57.3, 80.0):
        cover = fcover(lai, ala)
        assert cover[0] == 0.0
        assert (np.diff(cover) > 0).all()
        assert cover[-1] < 1.0
    # Spherical leaves project half their area; planophile more, erectophile less.
    assert nadir_projection(57.3) == pytest.approx(0.5, abs=0.03)
    assert nadir_projection(30.0) > nadir_projection(57.3) > nadir_projection(80.0)
    assert (fcover(2.0, 30.0) > fcover(2.0, 80.0)).all()


def test_sun_zenith_at_overpass_follows_the_seasons() -> None:
    from datetime import date

    june, december = solar_zenith(date(2021, 6, 21), 50.63), solar_zenith(date(2021, 12, 21), 50.63)
    # Noon would give 27.2° and 74.1°; 10:30 is a little lower in the sky.
    assert 28 < june < 35
    assert 74 < december < 80


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reflectance = torch.rand(n, len(S2_BANDS), generator=g) * 0.5
    angles = torch.rand(n, len(ANGLES), generator=g) * torch.tensor([60.0, 10.0, 180.0])
    return reflectance, angles


def test_network_scripts_and_ignores_b02_and_b8a() -> None:
    torch.manual_seed(0)
    model = BiophysNet().eval()
    scripted = torch.jit.script(model)
    reflectance, angles = _inputs(32)
    with torch.no_grad():
        eager = model(reflectance, angles)
        assert eager.shape == (32, len(VARIABLES))
        assert torch.allclose(scripted(reflectance, angles), eager, atol=1e-6)
        changed = reflectance.clone()
        changed[:, S2_BANDS.index("B02")] = 0.9
        changed[:, S2_BANDS.index("B8A")] = 0.0
        assert torch.equal(model(changed, angles), eager)
        used = reflectance.clone()
        used[:, S2_BANDS.index("B08")] += 0.2
        assert not torch.equal(model(used, angles), eager)
    assert len(MODEL_BANDS) == 8 and "B02" not in MODEL_BANDS and "B8A" not in MODEL_BANDS


def test_outputs_are_clamped_to_physical_ranges() -> None:
    model = BiophysNet().eval()
    with torch.no_grad():
        model.y_mean.fill_(100.0)
        high = model(*_inputs(4))
        model.y_mean.fill_(-100.0)
        low = model(*_inputs(4))
    assert torch.allclose(high, torch.tensor(OUTPUT_MAX).expand(4, 3))
    assert (low == 0).all()


def test_worldcereal_cube_reads_with_cropland_on_the_same_grid() -> None:
    cube = read_worldcereal(WORLDCEREAL_DIR)
    assert cube.reflectance.shape == (12, 10000, len(S2_BANDS))
    assert [m.strftime("%Y-%m") for m in cube.months][:3] == ["2020-11", "2020-12", "2021-01"]
    assert not cube.valid[1].any() and not cube.valid[2].any()  # empty months
    assert cube.valid[7].all()
    assert 0.3 < cube.cropland.mean() < 0.9
    # B8A is B08's copy; values are reflectances, not digital numbers.
    june = cube.reflectance[7]
    assert np.array_equal(june[:, S2_BANDS.index("B8A")], june[:, S2_BANDS.index("B08")])
    assert 0 < np.nanmedian(june) < 1


def test_short_training_writes_a_model_and_card(tmp_path: Path) -> None:
    out = tmp_path / "biophys"
    lines: list[str] = []
    card = train_biophys(
        out,
        samples=120,
        epochs=3,
        seed=1,
        threads=2,
        srf_dir=SRF_DIR,
        worldcereal_dir=WORLDCEREAL_DIR,
        log=lines.append,
    )
    assert (out / "model.pt").exists() and (out / "card.md").exists()
    saved = load_card(out)
    assert saved.name == "biophys_prosail" and saved.version == "1"
    assert saved.task == "regression"
    assert [(t.name, t.dims) for t in saved.inputs] == [("reflectance", [10]), ("angles", [3])]
    assert [(t.name, t.dims) for t in saved.outputs] == [("variables", [3])]
    assert saved.split == {**card.split, "train": 96, "held_out": 24}
    assert set(saved.metrics["held_out_simulations"]) == set(VARIABLES)
    monthly = saved.metrics["worldcereal_monthly_median"]
    assert monthly["2020-12"]["valid_pixels"] == 0 and "cropland" in monthly["2021-06"]
    assert list(saved.input_statistics["reflectance"]) == list(S2_BANDS)
    assert saved.training["simulation_seconds"] > 0
    assert any("held-out LAI" in line for line in lines)
    scripted = torch.jit.load(str(out / "model.pt")).eval()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        outputs = scripted(*_inputs(5))
    assert outputs.shape == (5, 3)
    json.loads((out / "card.json").read_text())


def test_committed_model_on_real_worldcereal_cropland() -> None:
    model = torch.jit.load(str(COMMITTED / "model.pt")).eval()  # type: ignore[no-untyped-call]
    cube = read_worldcereal(WORLDCEREAL_DIR)

    def cropland_lai(month: int) -> npt.NDArray[np.float64]:
        valid = cube.valid[month] & cube.cropland
        sza = solar_zenith(cube.months[month].replace(day=15), 50.63)
        reflectance = torch.from_numpy(cube.reflectance[month][valid])
        angles = torch.tensor([[sza, 5.0, 90.0]]).expand(len(reflectance), 3)
        with torch.no_grad():
            out: npt.NDArray[np.float64] = model(reflectance, angles).numpy().astype(np.float64)
        assert np.isfinite(out).all()
        return out[:, 0]

    march, june, august = cropland_lai(4), cropland_lai(7), cropland_lai(9)
    assert len(june) > 1000
    assert 1.0 < np.median(june) < 6.0
    # a crop cycle: bare in early spring, green in June, harvested by August
    assert np.median(june) > 2 * np.median(march)
    assert np.median(august) < 0.5 * np.median(june)
    card = load_card(COMMITTED)
    assert card.metrics["held_out_simulations"]["LAI"]["r2"] > 0.7
