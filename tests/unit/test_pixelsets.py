"""Pixel sets of parcels against a direct numpy reference, on real data.

- the eo-learn patch: 88 real parcels, 68 dates of real NDVI and real cloud masks;
- the WorldCereal cube: real reflectances (offset, 20 m bands, no-data months), with a
  few seeded parcels in its CRS (tiny, multi-part, outside the scene).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import rasterio.features
from rasterio.transform import from_origin
from shapely.geometry import MultiPolygon, Point, box
from shapely.geometry.base import BaseGeometry

from revisit_cli.demo_data import BANDS, EPSG, read_cube
from revisit_common import events_pb2 as pb
from revisit_preprocess.pixelsets import (
    VALUE_SCALE,
    Parcel,
    PixelSetConfig,
    extract_pixel_sets,
    sample_positions,
)
from tests.eolearn_scenes import EoLearnPatch
from tests.rasters import write_cog

S = 16


def parcel_pixels(
    geometry: BaseGeometry, shape: tuple[int, ...], transform: rasterio.Affine
) -> npt.NDArray[np.bool_]:
    """The parcel's pixels by GDAL's own rasterize (pixel centres), or the pixel under its
    representative point when it covers no pixel centre (none when that is off the grid)."""
    inside = rasterio.features.rasterize(
        [(geometry, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8"
    ).astype(bool)
    if not inside.any():
        point = geometry.representative_point()
        col, row = ~transform @ (point.x, point.y)
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            inside[int(row), int(col)] = True
    return inside


def reference_pixels(
    dn: npt.NDArray[np.floating],  # (C, rows, cols)
    valid: npt.NDArray[np.bool_],  # (rows, cols)
    transform: rasterio.Affine,
    parcel: Parcel,
    acquisition: str,
    scales: Sequence[float],
    offsets: Sequence[float],
    size: int = S,
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int64]] | None:
    """The pixel set of one parcel computed on whole arrays, and the flat pixel indices."""
    pixels = np.flatnonzero(parcel_pixels(parcel.geometry, valid.shape, transform))
    good = pixels[valid.ravel()[pixels]]
    if good.size == 0:
        return None
    positions = sample_positions(np.array([parcel.id]), np.array([good.size]), acquisition, size)
    chosen = good[positions[0]]
    flat = dn.reshape(len(dn), -1)[:, chosen].astype(np.float64)
    reflectance = flat * np.asarray(scales)[:, None] + np.asarray(offsets)[:, None]
    return np.round(reflectance * VALUE_SCALE).astype(np.int16), chosen


def split(scene: pb.SceneDiscovered) -> tuple[list[pb.BandAsset], pb.BandAsset | None]:
    bands = [b for b in scene.bands if b.band != "SCL"]
    return bands, next((b for b in scene.bands if b.band == "SCL"), None)


def test_eolearn_pixel_sets_equal_the_reference_and_never_hold_a_cloudy_pixel(
    eolearn_patch: EoLearnPatch, eolearn_scenes: list[pb.SceneDiscovered]
) -> None:
    # Every date whose cloud cover is partial, plus a clear one: 32-px blocks, so parcels
    # are grouped over many windows.
    cover = eolearn_patch.cloud.mean(axis=(1, 2))
    partial = [t for t in range(len(cover)) if 0.05 < cover[t] < 0.95][:12]
    dates = [*partial, int(np.argmin(cover))]
    assert len(dates) >= 6
    for t in dates:
        scene = eolearn_scenes[t]
        bands, scl = split(scene)
        got = extract_pixel_sets(
            bands, scl, eolearn_patch.parcels, scene.acquisition_key, PixelSetConfig(S, 32), None
        )
        dn = np.repeat(eolearn_patch.ndvi_dn(t)[None], len(bands), axis=0)
        expected = {}
        for parcel in eolearn_patch.parcels:
            ref = reference_pixels(
                dn,
                ~eolearn_patch.cloud[t],
                eolearn_patch.transform,
                parcel,
                scene.acquisition_key,
                [1e-4] * len(bands),
                [0.0] * len(bands),
            )
            if ref is not None:
                values, flat = ref
                assert not eolearn_patch.cloud[t].ravel()[flat].any()
                expected[parcel.id] = values
        assert list(got.parcel_ids) == sorted(expected), f"date {t}"
        for pid, values in zip(got.parcel_ids, got.values, strict=True):
            np.testing.assert_array_equal(
                values, expected[int(pid)], err_msg=f"date {t} parcel {pid}"
            )
        assert got.in_scene == 86  # 2 of the 88 parcels lie outside the 1 km patch


def test_share_of_parcels_observed_per_scene_on_the_real_series(
    eolearn_patch: EoLearnPatch, eolearn_scenes: list[pb.SceneDiscovered]
) -> None:
    shares = []
    for t, scene in enumerate(eolearn_scenes):
        bands, scl = split(scene)
        got = extract_pixel_sets(
            bands, scl, eolearn_patch.parcels, scene.acquisition_key, PixelSetConfig(S), None
        )
        # a parcel is observed iff one of its pixels is clear: checked on the masks directly
        clear = 0
        for parcel in eolearn_patch.parcels:
            inside = parcel_pixels(
                parcel.geometry, eolearn_patch.cloud[t].shape, eolearn_patch.transform
            )
            clear += bool((inside & ~eolearn_patch.cloud[t]).any())
        assert got.observed == clear
        shares.append(got.observed / got.in_scene)
    shares_a = np.array(shares)
    print(
        f"\neo-learn, {len(shares)} scenes, {eolearn_patch.cloud.mean():.1%} of pixels cloudy: "
        f"share of the 86 parcels with >= 1 valid observation per scene: "
        f"mean {shares_a.mean():.3f}, median {np.median(shares_a):.3f}; "
        f"scenes with none {int((shares_a == 0).sum())}, with all {int((shares_a == 1).sum())}"
    )
    assert 0 < shares_a.mean() < 1


# --- WorldCereal: offsets, 20 m bands, small, multi-part and outside parcels --------------

MONTH = 7  # 2021-06


@pytest.fixture(scope="module")
def cube_scene(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[pb.BandAsset], npt.NDArray[np.uint16], rasterio.Affine]:
    """The June composite as COGs: 10 m bands as they are, B05 also as a real 20 m band
    (2×2 means), with the N0400 offset of −0.1 on every band."""
    cube = read_cube()
    out = tmp_path_factory.mktemp("cube")
    transform = from_origin(cube.x[0] - 5, cube.y[0] + 5, 10, 10)
    bands, stack = [], []
    for name in BANDS:
        dn = cube.dn[name][MONTH]
        path = out / f"{name}.tif"
        write_cog(path, dn, transform, EPSG, 65535)
        bands.append(
            pb.BandAsset(
                band=name, href=str(path), scale=1e-4, offset=-0.1, nodata=65535, has_nodata=True
            )
        )
        stack.append(dn)
    b05_20m = (
        cube.dn["B05"][MONTH].reshape(50, 2, 50, 2).mean(axis=(1, 3)).round().astype(np.uint16)
    )
    write_cog(
        out / "B05_20m.tif", b05_20m, from_origin(cube.x[0] - 5, cube.y[0] + 5, 20, 20), EPSG, 65535
    )
    bands.append(
        pb.BandAsset(
            band="B05",
            href=str(out / "B05_20m.tif"),
            scale=1e-4,
            offset=-0.1,
            nodata=65535,
            has_nodata=True,
        )
    )
    stack.append(np.repeat(np.repeat(b05_20m, 2, axis=0), 2, axis=1))
    return bands, np.stack(stack), transform


def cube_parcels(transform: rasterio.Affine) -> list[Parcel]:
    x0, y0 = transform.c, transform.f
    field = box(x0 + 102, y0 - 502, x0 + 402, y0 - 202)  # 30×30 px, edges off pixel centres
    tiny = box(x0 + 603, y0 - 603, x0 + 606, y0 - 606).buffer(0)  # 3 m: no pixel centre
    two_parts = MultiPolygon(
        [box(x0 + 10, y0 - 60, x0 + 60, y0 - 10), box(x0 + 800, y0 - 990, x0 + 990, y0 - 800)]
    )
    edge = box(x0 - 200, y0 - 300, x0 + 30, y0 - 100)  # partly off the scene
    outside = Point(x0 - 5_000, y0 + 5_000).buffer(100)
    geoms: list[BaseGeometry] = [field, tiny, two_parts, edge, outside]
    return [Parcel(i + 10, g) for i, g in enumerate(geoms)]


def test_cube_pixel_sets_have_the_offset_applied_and_20m_bands_by_nearest_neighbour(
    cube_scene: tuple[list[pb.BandAsset], npt.NDArray[np.uint16], rasterio.Affine],
) -> None:
    bands, stack, transform = cube_scene
    parcels = cube_parcels(transform)
    got = extract_pixel_sets(
        bands, None, parcels, "S2B:31UFS:20210601", PixelSetConfig(S), "EPSG:32631"
    )
    assert list(got.parcel_ids) == [10, 11, 12, 13]  # the one outside yields nothing
    assert got.in_scene == 4
    valid = (stack != 65535).all(axis=0)
    for parcel, values in zip(parcels, got.values, strict=False):
        ref = reference_pixels(
            stack,
            valid,
            transform,
            parcel,
            "S2B:31UFS:20210601",
            [1e-4] * len(bands),
            [-0.1] * len(bands),
        )
        assert ref is not None
        np.testing.assert_array_equal(values, ref[0])
        # offset applied: stored value = (dn × 1e-4 − 0.1) × 1e4 = dn − 1000
        np.testing.assert_array_equal(
            values.astype(np.int32),
            stack.reshape(len(bands), -1)[:, ref[1]].astype(np.int32) - 1000,
        )
    tiny = dict(zip(got.parcel_ids, got.n_valid, strict=True))[11]
    assert tiny == 1  # the pixel under it, repeated S times
    assert dict(zip(got.parcel_ids, got.n_valid, strict=True))[12] == 25 + 19 * 19
    perimeter, area_px, cover, ratio = got.geomfeat[0]
    assert (perimeter, area_px, cover) == pytest.approx((1200.0, 900.0, 1.0))
    assert ratio == pytest.approx(1200 / 90_000)


def test_a_month_without_data_observes_no_parcel(tmp_path: Path) -> None:
    cube = read_cube()
    transform = from_origin(cube.x[0] - 5, cube.y[0] + 5, 10, 10)
    path = tmp_path / "B04.tif"
    write_cog(path, cube.dn["B04"][1], transform, EPSG, 65535)  # 2020-12: all 65535
    band = pb.BandAsset(band="B04", href=str(path), scale=1e-4, nodata=65535, has_nodata=True)
    got = extract_pixel_sets(
        [band], None, cube_parcels(transform), "x", PixelSetConfig(S), "EPSG:32631"
    )
    assert got.observed == 0 and got.in_scene == 4
    assert got.values.shape == (0, 1, S)


def test_parcels_given_in_wgs84_are_reprojected(
    cube_scene: tuple[list[pb.BandAsset], npt.NDArray[np.uint16], rasterio.Affine],
) -> None:
    from revisit_preprocess.raster import to_crs

    bands, _, transform = cube_scene
    local = cube_parcels(transform)[:1]
    wgs84 = [
        Parcel(p.id, g)
        for p, g in zip(
            local, to_crs([p.geometry for p in local], "EPSG:4326", "EPSG:32631"), strict=True
        )
    ]
    a = extract_pixel_sets(bands, None, local, "k", PixelSetConfig(S), "EPSG:32631")
    b = extract_pixel_sets(bands, None, wgs84, "k", PixelSetConfig(S))
    np.testing.assert_array_equal(a.values, b.values)


def test_sampling_is_without_replacement_from_s_pixels_on_uniform_and_seeded() -> None:
    ids = np.arange(1, 2001, dtype=np.int64)
    counts = np.full(2000, 100, np.int64)
    a = sample_positions(ids, counts, "S2A:31UFS:20210601", 64)
    assert a.shape == (2000, 64) and a.min() >= 0 and a.max() <= 99
    assert all(len(set(row)) == 64 for row in a.tolist())  # n >= S: no pixel twice
    hits = np.bincount(a.ravel(), minlength=100) / 2000  # each pixel: chance 64/100
    assert np.abs(hits - 0.64).max() < 0.05
    np.testing.assert_array_equal(a, sample_positions(ids, counts, "S2A:31UFS:20210601", 64))
    assert (a != sample_positions(ids, counts, "S2A:31UFS:20210611", 64)).any()
    small = sample_positions(ids[:500], np.full(500, 5, np.int64), "k", 64)
    shares = np.bincount(small.ravel(), minlength=5) / small.size  # with replacement
    assert small.max() == 4 and np.abs(shares - 0.2).max() < 0.01
