"""Windowed reads of the bands of one scene over one AOI, on a common 10 m grid."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, WindowError
from rasterio.windows import Window, from_bounds
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError, TransientError

#: Tuned for Cloud-Optimized GeoTIFFs over HTTP: no directory listing, few round trips.
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.jp2",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # a bounded block cache: windows are read once, a large cache only holds memory
    "GDAL_CACHEMAX": 256,  # MB
}


#: Sentinel-2 scene classification (SCL) classes that make a pixel unusable: no data (0),
#: saturated or defective (1), cloud shadow (3), cloud medium (8) and high (9)
#: probability, thin cirrus (10), snow or ice (11).
SCL_INVALID = (0, 1, 3, 8, 9, 10, 11)
#: Surface reflectance a valid pixel has in every band. A value outside (or NaN) is
#: defective, or the catalog's scale and offset are wrong: the pixel is masked like no
#: data. The brightest L2A surfaces (snow, cloud tops) stay under 1.6.
REFLECTANCE_RANGE = (-0.2, 2.0)


def plausible(reflectance: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.bool_]:
    """Per pixel (axis 0: bands): whether every band is finite and in REFLECTANCE_RANGE."""
    low, high = REFLECTANCE_RANGE
    with np.errstate(invalid="ignore"):
        ok: npt.NDArray[np.bool_] = ((reflectance >= low) & (reflectance <= high)).all(axis=0)
    return ok


@dataclass(frozen=True)
class BandStack:
    """Reflectance of several bands over an AOI window, on the grid of the first band."""

    reflectance: npt.NDArray[np.float32]  # (bands, rows, cols)
    valid: npt.NDArray[np.bool_]  # (rows, cols): every band has data
    transform: Affine
    crs: CRS
    aoi: BaseGeometry  # the AOI in `crs`
    row_off: int  # of the window in the reference raster, so grids are stable by tile
    col_off: int


def _read_error(href: str, exc: Exception) -> Exception:
    text = str(exc)
    if href.startswith(("http://", "https://", "/vsicurl")) and (
        "HTTP response code: 5" in text or "timed out" in text.lower()
    ):
        return TransientError(f"cannot read {href} now: {text}")
    return PoisonError(f"unreadable raster {href}: {text}")


def snapped_window(
    aoi_bounds: tuple[float, float, float, float],
    transform: Affine,
    width: int,
    height: int,
    step: int,
) -> Window | None:
    """The window covering the AOI, its origin snapped to multiples of `step` pixels from
    the raster origin (so patch grids are the same for every pass over a tile), clipped to
    the raster. None when the AOI does not overlap the raster; PoisonError when its
    bounds are not finite (an AOI far outside the area of the raster's CRS) or the raster
    is not north-up."""
    if not all(map(math.isfinite, aoi_bounds)):
        raise PoisonError(f"the AOI does not project into the raster's CRS: bounds {aoi_bounds}")
    try:
        win = from_bounds(*aoi_bounds, transform=transform)
    except WindowError as exc:
        raise PoisonError(f"raster grid {tuple(transform)[:6]} is not north-up: {exc}") from exc
    col0 = max(0, math.floor(win.col_off / step) * step)
    row0 = max(0, math.floor(win.row_off / step) * step)
    col1 = min(width, math.ceil(win.col_off + win.width))
    row1 = min(height, math.ceil(win.row_off + win.height))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def read_stack(
    bands: list[pb.BandAsset],
    aoi_wkt_4326: str,
    step: int,
    scl: pb.BandAsset | None = None,
    epsg: int | None = None,
) -> BandStack | None:
    """Read `bands` (in that order) over the AOI; None when the AOI misses the scene.

    The first band is the reference: its grid (10 m) is the grid of the result. A pixel
    is valid when every band has data and a plausible reflectance (`plausible`) and,
    with an `scl` band, its class is not one of `SCL_INVALID`.
    """
    with rasterio.Env(**GDAL_ENV), ExitStack() as opened:
        sources = open_bands(opened, bands, epsg)
        ref = sources[0]
        crs, ref_transform = ref.crs, ref.transform
        aoi = to_crs([_wkt(aoi_wkt_4326)], crs)[0]
        window = snapped_window(aoi.bounds, ref_transform, ref.width, ref.height, step)
        if window is None:
            return None
        transform = rasterio.windows.transform(window, ref_transform)
        bounds = rasterio.windows.bounds(window, ref_transform)
        shape_out = (int(window.height), int(window.width))
        reflectance = np.empty((len(bands), *shape_out), dtype=np.float32)
        valid = np.ones(shape_out, dtype=bool)
        for i, (band, src) in enumerate(zip(bands, sources, strict=True)):
            # 20 m bands are resampled onto the 10 m grid of the reference band.
            dn = _read_onto(src, band.href, bounds, shape_out, Resampling.bilinear)
            nodata = nodata_of(band, src)
            if nodata is not None:
                valid &= dn != nodata
            reflectance[i] = dn.astype(np.float32) * band.scale + band.offset
        if scl is not None:
            src = opened.enter_context(open_band(scl))
            # classes: nearest neighbour onto the 10 m grid, never interpolated
            classes = _read_onto(src, scl.href, bounds, shape_out, Resampling.nearest)
            valid &= ~np.isin(classes, SCL_INVALID)
    valid &= plausible(reflectance)
    return BandStack(
        reflectance, valid, transform, crs, aoi, int(window.row_off), int(window.col_off)
    )


def _read_onto(
    src: rasterio.DatasetReader,
    href: str,
    bounds: tuple[float, float, float, float],
    shape_out: tuple[int, int],
    resampling: Resampling,
) -> npt.NDArray[Any]:
    """The first band of `src` over `bounds`, resampled to `shape_out` pixels."""
    return _read(
        src,
        href,
        window=from_bounds(*bounds, transform=src.transform),
        out_shape=shape_out,
        resampling=resampling,
        boundless=False,
    )


def _read(src: rasterio.DatasetReader, href: str, **options: Any) -> npt.NDArray[Any]:
    """Band 1 of `src`, read with `options`; read failures classified."""
    try:
        data: npt.NDArray[Any] = src.read(1, **options)
    except (RasterioError, OSError) as exc:
        raise _read_error(href, exc) from exc
    return data


def to_crs(
    geometries: Sequence[BaseGeometry], crs: CRS | str, src: str = "EPSG:4326"
) -> list[BaseGeometry]:
    """Geometries reprojected (vectorised, coordinates in x/y order)."""
    transformer = Transformer.from_crs(src, crs, always_xy=True)

    def project(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return list(shapely.transform(np.asarray(geometries, dtype=object), project))


def open_bands(
    opened: ExitStack, bands: Sequence[pb.BandAsset], epsg: int | None = None
) -> list[rasterio.DatasetReader]:
    """Open the bands (closed with `opened`); PoisonError unless all share the CRS of the
    first one and, with `epsg`, that CRS is EPSG:`epsg`."""
    sources = [opened.enter_context(open_band(b)) for b in bands]
    for band, src in zip(bands[1:], sources[1:], strict=True):
        if src.crs != sources[0].crs:
            raise PoisonError(
                f"band {band.band} is in {src.crs}, band {bands[0].band} in {sources[0].crs}"
            )
    if epsg is not None and sources and sources[0].crs != CRS.from_epsg(epsg):
        raise PoisonError(
            f"band {bands[0].band} is in {sources[0].crs or 'no CRS'}, not in EPSG:{epsg}, "
            "the UTM zone of its MGRS tile"
        )
    return sources


_MGRS_TILE = re.compile(r"^(\d{1,2})([C-HJ-NP-X])[A-HJ-NP-Z]{2}$")


def tile_epsg(tile_id: str) -> int | None:
    """The EPSG code of the UTM zone of a Sentinel-2 MGRS tile ("31UFS" -> 32631, "38KQE"
    -> 32738: bands C..M are south); None for an id that is not an MGRS tile."""
    match = _MGRS_TILE.match(tile_id.upper())
    if match is None or not 1 <= int(match[1]) <= 60:
        return None
    return (32600 if match[2] >= "N" else 32700) + int(match[1])


def nodata_of(band: pb.BandAsset, src: rasterio.DatasetReader) -> float | None:
    """The no-data value: the catalog's, else the raster's own."""
    return band.nodata if band.has_nodata else src.nodata


def open_band(band: pb.BandAsset) -> rasterio.DatasetReader:
    try:
        return rasterio.open(band.href)
    except (RasterioError, OSError) as exc:
        raise _read_error(band.href, exc) from exc


def read_window(
    src: rasterio.DatasetReader, href: str, window: Window, ref_transform: Affine
) -> tuple[npt.NDArray[Any], Window]:
    """The pixels of `src`, on its own grid and at its own resolution, that cover `window`
    of the reference grid (rounded outwards, clipped to the raster), and where they are."""
    bounds = rasterio.windows.bounds(window, ref_transform)
    native = from_bounds(*bounds, transform=src.transform)
    col0 = max(0, math.floor(native.col_off + 1e-6))
    row0 = max(0, math.floor(native.row_off + 1e-6))
    col1 = min(src.width, math.ceil(native.col_off + native.width - 1e-6))
    row1 = min(src.height, math.ceil(native.row_off + native.height - 1e-6))
    read = Window(col0, row0, max(1, col1 - col0), max(1, row1 - row0))
    return _read(src, href, window=read), read


def _wkt(text: str) -> BaseGeometry:
    try:
        return shapely_wkt.loads(text)
    except Exception as exc:
        raise PoisonError(f"unreadable AOI geometry: {exc}") from exc
