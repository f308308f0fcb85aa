"""A full Sentinel-2 L2A tile for the preprocessing benchmark, built from real sample data.

`build_bench_scene(out_dir)` writes one scene on the real grid of MGRS tile 31UFS
(EPSG:32631, upper-left corner x=600000 y=5700000; the WorldCereal cube lies in this
tile) and a parcel layer, and caches them: a second call with the same parameters finds
`manifest.json` and returns the files without touching them.

What is real and what is not:

* Reflectances are real: every 1 km × 1 km block of the tile is the WorldCereal cube
  (`data/worldcereal/worldcereal_preprocessed_inputs.nc`, 100 × 100 px at 10 m) of one
  month (index 6, 2021-05), tiled over the 109.8 km of the tile. Each copy is turned by
  one of the 8 symmetries of the square (a seeded, deterministic choice, the same for
  every band, the upper-left copy untouched) so the image is not perfectly periodic.
  10 m bands B02 B03 B04 B08 are the cube as it is; 20 m bands B05 B06 B07 B8A B11 B12
  are the cube's band averaged over 2 × 2 blocks, then tiled. The cube has no B8A: B8A
  is the cube's B08 (averaged to 20 m), as the demo does.
* The layout of the tile is not real geography: the same square kilometre of Hesbaye
  repeats all over the tile.
* SCL (20 m) is synthetic: a seeded, smooth random field (several octaves of value
  noise) thresholded so that 25 % of the tile is class 9 (cloud, high probability); 5 %
  is class 3 (cloud shadow), the clouds displaced about 1 km to the north-north-west
  (sun in the south-south-east); the rest is class 4 (vegetation).
* Parcels are real shapes: the 88 LULC polygons of eo-learn's TestEOPatch (Slovenia,
  EPSG:32633, `data/eo-learn/LULC.gpkg`), taken relative to the patch's origin
  (`data/eo-learn/bbox.geojson`) and copied, translated and unchanged, onto an even
  k × k grid over the tile (8 × 8 = 64 copies, 5632 parcels, for the full tile), the
  layout's bounding box (2.4 km × 2.2 km: the parcels reach beyond the 1 km patch; they
  do not overlap) centred in each grid cell. They are written to `parcels.geojson`
  (EPSG:32631) with their id (1..N) and source LULC_ID.

Bands are Cloud-Optimized GeoTIFFs (DEFLATE, 512 px blocks, overviews), uint16 with
nodata 65535; SCL is uint8 with nodata 0. Each band is written row strip by row strip
to a temporary GeoTIFF, then copied to a COG, so memory stays far below 2 GB.

Run `python tests/bench/preprocess_scene.py OUT_DIR [--size N]` to build it by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import rasterio
import shapely
from rasterio.shutil import copy as raster_copy
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

REPO_ROOT = Path(__file__).resolve().parents[2]
CUBE = REPO_ROOT / "data" / "worldcereal" / "worldcereal_preprocessed_inputs.nc"
PARCELS_GPKG = REPO_ROOT / "data" / "eo-learn" / "LULC.gpkg"
PATCH_BBOX = REPO_ROOT / "data" / "eo-learn" / "bbox.geojson"

VERSION = 1  # bump when the output changes for the same parameters
SEED = 20210501
MONTH = 6  # 2021-05 in the cube (2020-12 and 2021-01 are empty)
TILE = "31UFS"
EPSG = 32631
ORIGIN_X, ORIGIN_Y = 600000.0, 5700000.0  # upper-left corner of 31UFS
RES = 10.0
FULL_SIZE = 10980
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
BANDS_10M = frozenset({"B02", "B03", "B04", "B08"})
CUBE_BAND = {b: b for b in BANDS} | {"B8A": "B08"}  # the cube has no B8A
NODATA = 65535
BLOCK = 100  # the cube is 100 × 100 px at 10 m

SCL_NODATA = 0
SCL_SHADOW = 3
SCL_VEGETATION = 4
SCL_CLOUD = 9
CLOUD_SHARE = 0.25
SHADOW_SHARE = 0.05
SHADOW_OFFSET_M = (866.0, -500.0)  # shadow = cloud moved 1 km towards 330° (north, east)
NOISE_CELLS_M = (5120.0, 2560.0, 1280.0, 640.0, 320.0)  # octaves of the cloud field

COG_OPTIONS = {"COMPRESS": "DEFLATE", "BLOCKSIZE": 512, "NUM_THREADS": "ALL_CPUS"}
MANIFEST = "manifest.json"
PARCELS_FILE = "parcels.geojson"


@dataclass(frozen=True)
class BenchScene:
    bands: dict[str, Path]  # B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 -> COG
    scl: Path
    parcels: list[tuple[int, BaseGeometry]]  # (id 1..N, polygon in EPSG:32631)
    size: int  # pixels per side at 10 m; the 20 m rasters have size // 2
    epsg: int = EPSG
    lulc_ids: dict[int, int] = field(default_factory=dict)  # parcel id -> source LULC_ID
    parcels_file: Path | None = None  # the same parcels as GeoJSON

    @property
    def transform_10m(self) -> Affine:
        return from_origin(ORIGIN_X, ORIGIN_Y, RES, RES)

    @property
    def transform_20m(self) -> Affine:
        return from_origin(ORIGIN_X, ORIGIN_Y, 2 * RES, 2 * RES)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        extent = self.size * RES
        return (ORIGIN_X, ORIGIN_Y - extent, ORIGIN_X + extent, ORIGIN_Y)


def _log(message: str) -> None:
    print(f"[bench-scene] {message}", flush=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- reflectances ---------------------------------------------------------------------


def read_month(month: int = MONTH, path: Path = CUBE) -> dict[str, npt.NDArray[np.uint16]]:
    """One month of the cube, band -> (100, 100) uint16, read as the demo's `read_cube`."""
    with h5py.File(path, "r") as nc:
        # uint16 stored as int16 with _Unsigned=true (netCDF-3 convention).
        out = {
            b: np.asarray(nc[f"S2-L2A-{b}"][month]).view(np.uint16)
            for b in sorted(set(CUBE_BAND.values()))
        }
    if all((a == NODATA).all() for a in out.values()):
        raise ValueError(f"month {month} of {path} holds no data")
    return out


def downsample2(a: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint16]:
    """Mean of 2 × 2 blocks (rounded), ignoring no-data; no data where all four are."""
    rows, cols = a.shape[0] // 2, a.shape[1] // 2
    blocks = a[: 2 * rows, : 2 * cols].reshape(rows, 2, cols, 2).astype(np.uint32)
    valid = blocks != NODATA
    count = valid.sum(axis=(1, 3))
    total = np.where(valid, blocks, 0).sum(axis=(1, 3))
    mean = (total + count // 2) // np.maximum(count, 1)
    return np.where(count > 0, mean, NODATA).astype(np.uint16)


def _symmetries(block: npt.NDArray[np.uint16]) -> list[npt.NDArray[np.uint16]]:
    """The 8 symmetries of a square block; index 0 is the block itself."""
    turns = [np.ascontiguousarray(np.rot90(block, k)) for k in range(4)]
    return turns + [np.ascontiguousarray(np.fliplr(t)) for t in turns]


def copy_symmetries(size: int, seed: int = SEED) -> npt.NDArray[np.int64]:
    """Which symmetry each 1 km copy uses, (copies, copies); the upper-left one is 0."""
    copies = math.ceil(size / BLOCK)
    choice = np.random.default_rng([seed, 1]).integers(0, 8, (copies, copies))
    choice[0, 0] = 0
    return choice


def _temp_profile(width: int, height: int, dtype: str, nodata: int) -> dict[str, Any]:
    return {
        "driver": "GTiff",
        "dtype": dtype,
        "count": 1,
        "width": width,
        "height": height,
        "crs": f"EPSG:{EPSG}",
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }


def _to_cog(tmp: Path, dest: Path, resampling: str) -> None:
    with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(tmp) as src:
        raster_copy(src, str(dest), driver="COG", RESAMPLING=resampling, **COG_OPTIONS)
    tmp.unlink()


def write_tiled_band(
    dest: Path, block: npt.NDArray[np.uint16], size: int, res: float, choice: npt.NDArray[np.int64]
) -> None:
    """Tile `block` (one 1 km copy) over a size × size raster, strip by strip, as a COG."""
    variants = _symmetries(block)
    step = block.shape[0]
    copies = math.ceil(size / step)
    tmp = dest.with_name(f".{dest.stem}.tmp.tif")
    profile = _temp_profile(size, size, "uint16", NODATA)
    profile["transform"] = from_origin(ORIGIN_X, ORIGIN_Y, res, res)
    with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(tmp, "w", **profile) as out:
        for i in range(copies):
            rows = min(step, size - i * step)
            strip = np.concatenate([variants[choice[i, j]] for j in range(copies)], axis=1)
            out.write(strip[:rows, :size], 1, window=Window(0, i * step, size, rows))
    _to_cog(tmp, dest, "AVERAGE")


# --- SCL ------------------------------------------------------------------------------


def _smooth_noise(n: int, res: float, seed: int) -> npt.NDArray[np.float32]:
    """Sum of octaves of value noise (smoothstep-interpolated random lattices), n × n."""
    rng = np.random.default_rng([seed, 2])
    out = np.zeros((n, n), np.float32)
    for octave, cell_m in enumerate(NOISE_CELLS_M):
        cell = cell_m / res
        lattice = rng.standard_normal((int(n / cell) + 2, int(n / cell) + 2)).astype(np.float32)
        pos = (np.arange(n) + 0.5) / cell
        i0 = pos.astype(np.int64)
        t = (pos - i0).astype(np.float32)
        t = t * t * (3 - 2 * t)
        # interpolate along columns once, then rows in chunks to bound memory
        cols = lattice[:, i0] * (1 - t) + lattice[:, i0 + 1] * t  # (lattice rows, n)
        amplitude = np.float32(0.5**octave)
        for r in range(0, n, 1024):
            i, w = i0[r : r + 1024], t[r : r + 1024, None]
            out[r : r + 1024] += amplitude * (cols[i] * (1 - w) + cols[i + 1] * w)
    return out


def scl_classes(n: int, res: float = 2 * RES, seed: int = SEED) -> npt.NDArray[np.uint8]:
    """Synthetic SCL, n × n: ~25 % cloud (9), ~5 % shadow (3), the rest vegetation (4)."""
    field_ = _smooth_noise(n, res, seed)
    step = max(1, n // 1500)  # quantiles from a regular subsample: shares within ~0.5 %
    cloud_at = np.quantile(field_[::step, ::step], 1 - CLOUD_SHARE)
    scl = np.full((n, n), SCL_VEGETATION, np.uint8)
    cloud = field_ >= cloud_at
    scl[cloud] = SCL_CLOUD
    # shadow at (r, c) <- cloud at (r + dy, c + dx): the clouds moved north-north-west
    dy = round(SHADOW_OFFSET_M[0] / res)
    dx = round(-SHADOW_OFFSET_M[1] / res)
    if dy < n and dx < n:
        cast = field_[dy:, dx:]  # the field seen from the shadowed pixel
        clear = ~cloud[: n - dy, : n - dx]
        sample = cast[::step, ::step][clear[::step, ::step]]
        clear_pixels = cast.size * sample.size / cast[::step, ::step].size
        share_of_clear = SHADOW_SHARE * n * n / max(clear_pixels, 1)
        if sample.size and share_of_clear < 1:
            shadow_at = np.quantile(sample, 1 - share_of_clear)
            target = scl[: n - dy, : n - dx]
            target[(cast >= shadow_at) & clear] = SCL_SHADOW
    return scl


def write_scl(dest: Path, n: int, seed: int) -> None:
    tmp = dest.with_name(f".{dest.stem}.tmp.tif")
    profile = _temp_profile(n, n, "uint8", SCL_NODATA)
    profile["transform"] = from_origin(ORIGIN_X, ORIGIN_Y, 2 * RES, 2 * RES)
    with rasterio.open(tmp, "w", **profile) as out:
        out.write(scl_classes(n, 2 * RES, seed), 1)
    _to_cog(tmp, dest, "NEAREST")


# --- parcels --------------------------------------------------------------------------


def _gpkg_geometry(blob: bytes) -> BaseGeometry | None:
    """A GeoPackage geometry blob: 'GP', version, flags, srs_id, envelope, then WKB."""
    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob")
    flags = blob[3]
    if flags & 0b10000:  # empty geometry
        return None
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 0b111]
    return shapely.from_wkb(bytes(blob[8 + envelope :]))


def _polygonal(geom: BaseGeometry | None) -> BaseGeometry | None:
    """The valid polygonal part of a geometry, or None when nothing is left."""
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        if geom.geom_type == "GeometryCollection":
            parts = [g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
            geom = shapely.union_all(parts) if parts else None
    if geom is None or geom.is_empty or geom.area <= 0:
        return None
    return geom


def read_source_parcels(
    gpkg: Path = PARCELS_GPKG, bbox: Path = PATCH_BBOX
) -> list[tuple[int, BaseGeometry]]:
    """The eo-learn LULC polygons as (LULC_ID, shape relative to the patch's origin)."""
    patch = json.loads(bbox.read_text())
    x0, y0 = np.asarray(patch["coordinates"][0]).min(axis=0)
    # pyogrio and fiona are not in the venv: read the GeoPackage with sqlite3.
    with sqlite3.connect(f"file:{gpkg}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT geom, LULC_ID FROM LULC ORDER BY fid").fetchall()
    out: list[tuple[int, BaseGeometry]] = []
    for blob, lulc_id in rows:
        geom = _polygonal(_gpkg_geometry(blob) if blob is not None else None)
        if geom is not None:
            out.append((int(lulc_id), affinity.translate(geom, -x0, -y0)))
    return out


def place_parcels(size: int, min_parcels: int) -> list[tuple[int, int, BaseGeometry]]:
    """Copies of the parcel layout on an even k × k grid over the tile, >= min_parcels.

    Returns (id, LULC_ID, polygon in EPSG:32631); ids count 1..N, copy by copy (rows from
    the north, west to east), in the GeoPackage's order within a copy.
    """
    source = read_source_parcels()
    k = math.ceil(math.sqrt(math.ceil(min_parcels / len(source))))
    lx0, ly0, lx1, ly1 = shapely.union_all([g for _, g in source]).bounds
    cell = size * RES / k
    if cell < max(lx1 - lx0, ly1 - ly0):
        raise ValueError(
            f"a {size} px tile has no room for {k} × {k} copies of the "
            f"{lx1 - lx0:.0f} × {ly1 - ly0:.0f} m parcel layout"
        )
    parcels: list[tuple[int, int, BaseGeometry]] = []
    for row in range(k):
        for col in range(k):
            # centre the layout's bounding box in its cell
            dx = ORIGIN_X + (col + 0.5) * cell - (lx0 + lx1) / 2
            dy = ORIGIN_Y - (row + 0.5) * cell - (ly0 + ly1) / 2
            for lulc_id, geom in source:
                translated = affinity.translate(geom, dx, dy)
                parcels.append((len(parcels) + 1, lulc_id, translated))
    return parcels


def write_parcels(dest: Path, parcels: list[tuple[int, int, BaseGeometry]]) -> None:
    features = [
        {
            "type": "Feature",
            "id": pid,
            "properties": {"id": pid, "LULC_ID": lulc_id},
            "geometry": mapping(geom),
        }
        for pid, lulc_id, geom in parcels
    ]
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{EPSG}"}},
        "features": features,
    }
    dest.write_text(json.dumps(collection, separators=(",", ":")))


def read_parcels(path: Path) -> tuple[list[tuple[int, BaseGeometry]], dict[int, int]]:
    features = json.loads(path.read_text())["features"]
    parcels = [(int(f["properties"]["id"]), shape(f["geometry"])) for f in features]
    lulc = {int(f["properties"]["id"]): int(f["properties"]["LULC_ID"]) for f in features}
    return parcels, lulc


# --- the scene ------------------------------------------------------------------------


def _params(size: int, min_parcels: int, seed: int) -> dict[str, Any]:
    return {
        "size": size,
        "min_parcels": min_parcels,
        "seed": seed,
        "month": MONTH,
        "tile": TILE,
        "epsg": EPSG,
        "inputs": {p.name: _sha256(p) for p in (CUBE, PARCELS_GPKG, PATCH_BBOX)},
    }


def _file_names() -> list[str]:
    return [*(f"{b}.tif" for b in BANDS), "SCL.tif", PARCELS_FILE]


def _cached(out_dir: Path, params: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("version") != VERSION or manifest.get("params") != params:
        return False
    files = manifest.get("files", {})
    return set(files) == set(_file_names()) and all(
        (out_dir / name).is_file() and (out_dir / name).stat().st_size == n
        for name, n in files.items()
    )


def _scene(out_dir: Path, size: int) -> BenchScene:
    parcels, lulc = read_parcels(out_dir / PARCELS_FILE)
    return BenchScene(
        bands={b: out_dir / f"{b}.tif" for b in BANDS},
        scl=out_dir / "SCL.tif",
        parcels=parcels,
        size=size,
        epsg=EPSG,
        lulc_ids=lulc,
        parcels_file=out_dir / PARCELS_FILE,
    )


def build_bench_scene(
    out_dir: Path, size: int = FULL_SIZE, min_parcels: int = 5000, *, seed: int = SEED
) -> BenchScene:
    """Build (or find, cached under out_dir) the benchmark scene; see the module's doc."""
    out_dir = Path(out_dir)
    params = _params(size, min_parcels, seed)
    if _cached(out_dir, params):
        _log(f"cached in {out_dir} (manifest matches), not rebuilt")
        return _scene(out_dir, size)

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    _log(f"building a {size} × {size} px scene of tile {TILE} in {out_dir}")
    month = read_month()
    choice = copy_symmetries(size, seed)
    for band in BANDS:
        t0 = time.perf_counter()
        block = month[CUBE_BAND[band]]
        if band in BANDS_10M:
            res, n = RES, size
        else:
            res, n, block = 2 * RES, size // 2, downsample2(block)
        write_tiled_band(out_dir / f"{band}.tif", block, n, res, choice)
        _log(f"{band}: {n} × {n} px at {res:.0f} m, {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    write_scl(out_dir / "SCL.tif", size // 2, seed)
    _log(f"SCL: {size // 2} × {size // 2} px at 20 m (synthetic), {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    parcels = place_parcels(size, min_parcels)
    write_parcels(out_dir / PARCELS_FILE, parcels)
    _log(f"parcels: {len(parcels)}, {time.perf_counter() - t0:.1f} s")

    manifest = {
        "version": VERSION,
        "generator": "tests/bench/preprocess_scene.py",
        "params": params,
        "parcels": len(parcels),
        "files": {name: (out_dir / name).stat().st_size for name in _file_names()},
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    with tempfile.NamedTemporaryFile("w", dir=out_dir, suffix=".json", delete=False) as tmp:
        json.dump(manifest, tmp, indent=2)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, out_dir / MANIFEST)
    _log(f"done in {manifest['build_seconds']} s")
    return _scene(out_dir, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", type=int, default=FULL_SIZE, help="pixels per side at 10 m")
    parser.add_argument("--min-parcels", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    scene = build_bench_scene(args.out_dir, args.size, args.min_parcels, seed=args.seed)
    seconds = time.perf_counter() - t0
    total = 0
    for path in [*scene.bands.values(), scene.scl, args.out_dir / PARCELS_FILE]:
        total += path.stat().st_size
        print(f"{path.name:16s} {path.stat().st_size / 2**20:9.1f} MiB")
    print(f"{'total':16s} {total / 2**20:9.1f} MiB, {len(scene.parcels)} parcels")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"time {seconds:.1f} s, peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
