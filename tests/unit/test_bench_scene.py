"""The benchmark scene generator in its small mode: a 1098 px tile (a tenth of 31UFS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from tests.bench.preprocess_scene import (
    BANDS,
    CLOUD_SHARE,
    MONTH,
    SHADOW_SHARE,
    BenchScene,
    build_bench_scene,
    read_month,
)

SIZE = 1098
MIN_PARCELS = 300


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> BenchScene:
    return build_bench_scene(tmp_path_factory.mktemp("bench-scene"), SIZE, MIN_PARCELS)


def _assert_cog(path: Path, shape: tuple[int, int], res: float, dtype: str, nodata: int) -> None:
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", path
        assert src.compression.name.lower() == "deflate"
        assert src.block_shapes == [(512, 512)]
        assert src.overviews(1), "a COG of more than one block carries overviews"
        assert src.crs.to_epsg() == 32631
        assert src.transform == from_origin(600000, 5700000, res, res)
        assert src.shape == shape
        assert src.dtypes == (dtype,)
        assert src.nodata == nodata


def test_bands_are_cogs_on_the_31ufs_grid(scene: BenchScene) -> None:
    assert list(scene.bands) == list(BANDS)
    assert scene.epsg == 32631 and scene.size == SIZE
    for band, path in scene.bands.items():
        if band in ("B02", "B03", "B04", "B08"):
            _assert_cog(path, (SIZE, SIZE), 10, "uint16", 65535)
        else:
            _assert_cog(path, (SIZE // 2, SIZE // 2), 20, "uint16", 65535)
    _assert_cog(scene.scl, (SIZE // 2, SIZE // 2), 20, "uint8", 0)


def test_reflectances_come_from_the_cube(scene: BenchScene) -> None:
    month = read_month(MONTH)
    with rasterio.open(scene.bands["B04"]) as src:
        b04 = src.read(1)
    np.testing.assert_array_equal(b04[:100, :100], month["B04"])
    # every 1 km copy is the cube's block turned or mirrored: same values, same histogram
    np.testing.assert_array_equal(
        np.sort(b04[500:600, 300:400], axis=None), np.sort(month["B04"], axis=None)
    )
    with rasterio.open(scene.bands["B8A"]) as src:
        b8a = src.read(1, window=((0, 50), (0, 50)))
    b08 = month["B08"].reshape(50, 2, 50, 2).astype(np.uint32).sum(axis=(1, 3))
    np.testing.assert_array_equal(b8a, ((b08 + 2) // 4).astype(np.uint16))


def test_scl_class_shares(scene: BenchScene) -> None:
    with rasterio.open(scene.scl) as src:
        scl = src.read(1)
    shares = {k: float((scl == k).mean()) for k in (3, 4, 9)}
    assert set(np.unique(scl)) <= {3, 4, 9}
    assert shares[9] == pytest.approx(CLOUD_SHARE, abs=0.05)
    assert shares[3] == pytest.approx(SHADOW_SHARE, abs=0.05)
    assert shares[4] == pytest.approx(1 - CLOUD_SHARE - SHADOW_SHARE, abs=0.05)


def test_parcels_cover_the_tile(scene: BenchScene) -> None:
    assert len(scene.parcels) >= MIN_PARCELS
    assert [pid for pid, _ in scene.parcels] == list(range(1, len(scene.parcels) + 1))
    tile = box(*scene.bounds)
    assert scene.bounds == (600000, 5700000 - SIZE * 10, 600000 + SIZE * 10, 5700000)
    for _, geom in scene.parcels:
        assert geom.is_valid and not geom.is_empty and geom.area > 0
        assert tile.contains(geom)
    assert set(scene.lulc_ids) == {pid for pid, _ in scene.parcels}


def test_second_call_reuses_the_cache(scene: BenchScene) -> None:
    out_dir = scene.scl.parent
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    again = build_bench_scene(out_dir, SIZE, MIN_PARCELS)
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before
    assert again.bands == scene.bands
    assert [pid for pid, _ in again.parcels] == [pid for pid, _ in scene.parcels]
    assert all(
        a.equals_exact(b, 0) for (_, a), (_, b) in zip(again.parcels, scene.parcels, strict=True)
    )
