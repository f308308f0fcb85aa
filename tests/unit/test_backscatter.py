"""Sentinel-1 per-parcel backscatter on the real WorldCereal σ⁰ (uint16 dB encoding)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import rasterio.features
from rasterio.transform import from_origin

from revisit_cli.demo_data import CUBE, EPSG
from revisit_common import events_pb2 as pb
from revisit_preprocess.backscatter import UncalibratedError, extract_backscatter
from revisit_preprocess.pixelsets import Parcel, PixelSetConfig
from tests.rasters import write_cog
from tests.unit.test_pixelsets import cube_parcels, parcel_pixels

MONTH = 7  # 2021-06


@pytest.fixture(scope="module")
def sigma0() -> tuple[dict[str, npt.NDArray[np.uint16]], rasterio.Affine]:
    with h5py.File(CUBE, "r") as nc:
        dn = {p: np.asarray(nc[f"S1-SIGMA0-{p}"][MONTH]).view(np.uint16) for p in ("VV", "VH")}
        x, y = np.asarray(nc["x"][:2]), np.asarray(nc["y"][:1])
    return dn, from_origin(x[0] - 5, y[0] + 5, 10, 10)


def reference(
    db: dict[str, npt.NDArray[np.float64]],
    valid: npt.NDArray[np.bool_],
    transform: rasterio.Affine,
    parcel: Parcel,
) -> list[float] | None:
    inside = parcel_pixels(parcel.geometry, valid.shape, transform)
    px = inside & valid
    if not px.any():
        return None
    mean = {p: 10 * np.log10(np.mean(10 ** (db[p][px] / 10))) for p in ("VV", "VH")}
    std = {p: float(np.std(db[p][px])) for p in ("VV", "VH")}
    return [mean["VV"], mean["VH"], std["VV"], std["VH"], mean["VH"] - mean["VV"]]


def test_worldcereal_uint16_and_linear_sigma0_give_the_reference_db_statistics(
    sigma0: tuple[dict[str, npt.NDArray[np.uint16]], rasterio.Affine], tmp_path: Path
) -> None:
    dn, transform = sigma0
    parcels = cube_parcels(transform)
    db = {p: 20 * np.log10(dn[p].astype(np.float64)) - 83 for p in dn}
    valid = (dn["VV"] > 0) & (dn["VV"] < 65535) & (dn["VH"] > 0) & (dn["VH"] < 65535)
    encoded = [
        pb.BandAsset(
            band=p,
            href=write_cog(tmp_path / f"{p}.tif", dn[p], transform, EPSG, 65535),
            scale=1,
            nodata=65535,
            has_nodata=True,
            quantity="db_uint16",
        )
        for p in ("VV", "VH")
    ]
    linear = [
        pb.BandAsset(
            band=p,
            href=write_cog(
                tmp_path / f"{p}_lin.tif",
                (10 ** (db[p] / 10)).astype(np.float32),
                transform,
                EPSG,
                0,
            ),
            scale=1,
            quantity="sigma0_linear",
        )
        for p in ("VV", "VH")
    ]
    a = extract_backscatter(encoded, parcels, PixelSetConfig(), f"EPSG:{EPSG}")
    b = extract_backscatter(linear, parcels, PixelSetConfig(), f"EPSG:{EPSG}")
    assert a.channels == ["VV_db_mean", "VH_db_mean", "VV_db_std", "VH_db_std", "VH_VV_db"]
    assert list(a.parcel_ids) == [10, 11, 12, 13] and a.in_scene == 4
    for pid, row in zip(a.parcel_ids, a.values, strict=True):
        expected = reference(db, valid, transform, next(p for p in parcels if p.id == pid))
        np.testing.assert_allclose(row, expected, atol=1e-4)
    np.testing.assert_allclose(a.values, b.values, atol=1e-3)
    # plausible cropland backscatter in June: VV around −10 dB, VH around −16 dB
    assert -14 < a.values[0, 0] < -6 and -22 < a.values[0, 1] < -12


def test_uncalibrated_grd_is_refused_before_reading(tmp_path: Path) -> None:
    band = pb.BandAsset(
        band="VV", href=str(tmp_path / "missing.tif"), scale=1, quantity="amplitude_dn"
    )
    with pytest.raises(UncalibratedError, match="calibration"):
        extract_backscatter([band], [])
