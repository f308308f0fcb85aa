"""Preprocessing of real demo scenes: windows, band order, substitutes, empty AOIs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.payload import PayloadStore
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LCZ_BANDS, LczGrid, select_bands
from revisit_preprocess.raster import snapped_window, tile_epsg
from tests.rasters import reproject_cog, rewrite_cog


@pytest.fixture(scope="module")
def june(demo_scenes: list[pb.SceneDiscovered]) -> pb.SceneDiscovered:
    return next(s for s in demo_scenes if s.header.scene_id.endswith("20210601_MONTHLY"))


def test_patches_are_reflectance_in_so2sat_band_order(
    june: pb.SceneDiscovered, tmp_path: Path, lcz_parity: dict[str, np.ndarray]
) -> None:
    store = PayloadStore(tmp_path)
    (out,) = handle_scene(june, store, LczGrid())
    batch = out.event
    assert isinstance(batch, pb.ObservationBatch)
    assert batch.epsg == 32631 and len(batch.lcz_patches) == 9
    patches = store.get_array(batch.patches)
    assert patches.shape == (9, len(LCZ_BANDS), 32, 32) and patches.dtype == np.float32
    days = (datetime(2021, 6, 1, tzinfo=UTC) - datetime(1990, 1, 1, tzinfo=UTC)).days
    expected = lcz_parity["dn"][lcz_parity["days_since_1990"] == days] / 10000.0
    np.testing.assert_allclose(patches, expected, atol=1e-6)
    # Cells are named by their upper-left corner in the raster CRS, on a 320 m grid.
    assert batch.lcz_patches[0].cell_id == "32631:664000:5612120"
    assert batch.lcz_patches[4].cell_id == "32631:664320:5611800"


def test_aoi_outside_the_scene_is_no_valid_observation(
    june: pb.SceneDiscovered, tmp_path: Path
) -> None:
    far = pb.SceneDiscovered()
    far.CopyFrom(june)
    far.aoi.geometry_wkt = "POLYGON ((5.5 50.7, 5.51 50.7, 5.51 50.71, 5.5 50.71, 5.5 50.7))"
    (out,) = handle_scene(far, PayloadStore(tmp_path), LczGrid())
    assert isinstance(out.event, pb.ObservationBatch)
    assert out.event.no_valid_observation and not out.event.lcz_patches


def test_missing_band_without_substitute_is_poison(june: pb.SceneDiscovered) -> None:
    with pytest.raises(PoisonError, match="has no B8A asset"):
        select_bands(june, LczGrid(substitutes={}))


def test_unreadable_raster_is_poison(june: pb.SceneDiscovered, tmp_path: Path) -> None:
    broken = pb.SceneDiscovered()
    broken.CopyFrom(june)
    corrupt = tmp_path / "B02.tif"
    corrupt.write_bytes(b"II*\x00 this is not a GeoTIFF")
    broken.bands[0].href = str(corrupt)
    with pytest.raises(PoisonError, match="unreadable raster"):
        handle_scene(broken, PayloadStore(tmp_path), LczGrid())
    # A broken band other than the reference is named in the error, not the reference.
    broken.CopyFrom(june)
    b11 = next(b for b in broken.bands if b.band == "B11")
    b11.href = str(corrupt)
    with pytest.raises(PoisonError, match=f"unreadable raster {corrupt}"):
        handle_scene(broken, PayloadStore(tmp_path), LczGrid())


def test_window_is_snapped_to_the_patch_grid_and_clipped() -> None:
    transform = Affine(10, 0, 600000, 0, -10, 5700000)
    window = snapped_window((600335.0, 5699000.0, 601000.0, 5699655.0), transform, 100, 100, 32)
    assert window is not None
    assert (window.col_off, window.row_off) == (32, 32)  # 33.5 px and 34.5 px snap down
    assert (window.col_off + window.width, window.row_off + window.height) == (100, 100)
    assert (
        snapped_window((500000.0, 5000000.0, 500010.0, 5000010.0), transform, 100, 100, 32) is None
    )


def with_scl(scene: pb.SceneDiscovered, path: Path, cloudy_columns: float) -> pb.SceneDiscovered:
    """The scene plus a 20 m SCL raster on its grid (EPSG:32631): vegetation (4), with
    cloud (9) over the given share of columns from the west and cloud shadow (3) in a
    seeded scatter of pixels."""
    b02 = next(b for b in scene.bands if b.band == "B02")
    with rasterio.open(b02.href) as ref:
        transform = ref.transform @ Affine.scale(2)  # 10 m → 20 m
        height, width, crs = ref.height // 2, ref.width // 2, ref.crs
    classes = np.full((height, width), 4, dtype=np.uint8)
    classes[:, : round(width * cloudy_columns)] = 9
    shadow = np.random.default_rng(7).random((height, width)) < 0.01
    classes[shadow & (classes == 4)] = 3
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        dtype="uint8",
        count=1,
        width=width,
        height=height,
        crs=crs,
        transform=transform,
        nodata=0,
    ) as out:
        out.write(classes, 1)
    masked = pb.SceneDiscovered()
    masked.CopyFrom(scene)
    masked.bands.append(pb.BandAsset(band="SCL", href=str(path), scale=1.0))
    return masked


def test_scl_clouds_mask_patches_and_a_fully_cloudy_aoi_is_no_valid_observation(
    june: pb.SceneDiscovered, tmp_path: Path
) -> None:
    store = PayloadStore(tmp_path)
    (clear,) = handle_scene(june, store, LczGrid())
    assert isinstance(clear.event, pb.ObservationBatch)
    assert any("no SCL band" in n for n in clear.event.notes)
    grid = LczGrid(min_valid_fraction=0.9)
    (half,) = handle_scene(with_scl(june, tmp_path / "half.tif", 0.5), store, grid)
    assert isinstance(half.event, pb.ObservationBatch)
    kept = {p.cell_id for p in half.event.lcz_patches}
    assert 0 < len(kept) < len(clear.event.lcz_patches)
    assert kept < {p.cell_id for p in clear.event.lcz_patches}
    assert all(0.9 <= p.valid_fraction < 1.0 for p in half.event.lcz_patches)  # shadows
    west = min(int(p.cell_id.split(":")[1]) for p in clear.event.lcz_patches)
    assert all(int(c.split(":")[1]) > west for c in kept)  # the cloudy west is gone
    (cloudy,) = handle_scene(with_scl(june, tmp_path / "all.tif", 1.0), store, grid)
    assert isinstance(cloudy.event, pb.ObservationBatch)
    assert cloudy.event.no_valid_observation and not cloudy.event.lcz_patches


def _with_bands(
    scene: pb.SceneDiscovered, tmp_path: Path, change: Callable[[str, Path, Path], str]
) -> pb.SceneDiscovered:
    """The scene with every band's raster replaced by `change(band, source, target)`."""
    out = pb.SceneDiscovered()
    out.CopyFrom(scene)
    for band in out.bands:
        band.href = change(band.band, Path(band.href), tmp_path / f"{band.band}.tif")
    return out


def test_tile_epsg_is_the_utm_zone_of_the_mgrs_tile() -> None:
    assert tile_epsg("31UFS") == 32631  # Hesbaye
    assert tile_epsg("30PXC") == 32630  # Ouagadougou
    assert tile_epsg("38KQE") == 32738  # Antananarivo, south of the equator
    assert tile_epsg("S1-R088-ASC") is None and tile_epsg("61UFS") is None


def test_rasters_in_another_crs_than_the_tiles_are_poison(
    june: pb.SceneDiscovered, tmp_path: Path
) -> None:
    mercator = _with_bands(june, tmp_path, lambda b, src, dst: reproject_cog(src, dst, 3857))
    with pytest.raises(PoisonError, match="is in EPSG:3857, not in EPSG:32631, the UTM zone"):
        handle_scene(mercator, PayloadStore(tmp_path), LczGrid())


def test_out_of_range_and_nan_reflectances_are_masked(
    june: pb.SceneDiscovered, tmp_path: Path
) -> None:
    def saturate_west(band: str, src: Path, dst: Path) -> str:
        if band != "B04":
            return str(src)

        def change(dn: np.ndarray) -> np.ndarray:
            out = dn.copy()
            out[:, : dn.shape[1] // 2] = 30_000  # reflectance 3.0: impossible
            return out

        return rewrite_cog(src, dst, change)

    store = PayloadStore(tmp_path)
    (clear,) = handle_scene(june, store, LczGrid())
    (half,) = handle_scene(_with_bands(june, tmp_path, saturate_west), store, LczGrid())
    assert isinstance(clear.event, pb.ObservationBatch)
    assert isinstance(half.event, pb.ObservationBatch)
    kept = {p.cell_id for p in half.event.lcz_patches}
    assert 0 < len(kept) < len(clear.event.lcz_patches)
    assert kept < {p.cell_id for p in clear.event.lcz_patches}

    def nan(band: str, src: Path, dst: Path) -> str:
        return rewrite_cog(src, dst, lambda dn: np.full(dn.shape, np.nan, np.float32))

    (none,) = handle_scene(_with_bands(june, tmp_path, nan), store, LczGrid())
    assert isinstance(none.event, pb.ObservationBatch)
    assert none.event.no_valid_observation and not none.event.lcz_patches
    assert "reflectance out of range" in none.event.notes[-1]
