"""The windows preprocess reads: an AOI's window on a raster grid, parcels' windows and
blocks, a band's pixels under a reference window, the pixels of parcel geometries and
the LCZ patches of a stack. For generated grids (transforms, sizes, CRSs) and shapes,
every window lies inside its raster, or the AOI misses it (None, an empty window), or
the error is a `PoisonError`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import example, given
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import box

from revisit_common.errors import PoisonError
from revisit_preprocess.lcz import LczGrid, cut_patches
from revisit_preprocess.pixelsets import blocks, pixel_windows, scanline_pixels
from revisit_preprocess.raster import BandStack, read_window, snapped_window, to_crs
from tests.fuzz.conftest import budget, ran

# NaN and infinite bounds are among the inputs: numpy says so, and that is expected.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: CRSs of real rasters: UTM zones north and south, Web Mercator, LAEA Europe, Lambert 93.
CRSS = ["EPSG:32631", "EPSG:32633", "EPSG:32720", "EPSG:32760", "EPSG:3857", "EPSG:3035"]
PIXEL = st.sampled_from([10.0, 20.0, 60.0]) | st.floats(1e-3, 1e4)
COORD = st.floats(-1e7, 1e7)


@st.composite
def grids(draw: st.DrawFn) -> tuple[Affine, int, int]:
    """A north-up grid (sometimes flipped): transform, width, height."""
    size = draw(PIXEL)
    sign_x = draw(st.sampled_from([1.0, 1.0, 1.0, -1.0]))
    sign_y = draw(st.sampled_from([-1.0, -1.0, -1.0, 1.0]))
    transform = Affine(sign_x * size, 0.0, draw(COORD), 0.0, sign_y * size, draw(COORD))
    return transform, draw(st.integers(1, 20_000)), draw(st.integers(1, 20_000))


ODD = st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -1e300])
#: Where bounds fall, as a fraction of the raster's extent: inside, across an edge, off it.
SHARE = st.floats(-1, 2) | ODD


@st.composite
def bounds_near(draw: st.DrawFn, grid: tuple[Affine, int, int]) -> tuple[float, ...]:
    """Bounds around the raster: inside, across an edge, outside, or not finite."""
    transform, width, height = grid
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (width, height)
    xa, xb = (x0 + draw(SHARE) * (x1 - x0) for _ in range(2))
    ya, yb = (y0 + draw(SHARE) * (y1 - y0) for _ in range(2))
    return min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)


@st.composite
def grid_and_bounds(draw: st.DrawFn, most: int = 1) -> tuple[Any, ...]:
    """A grid and 1 to `most` bounds around it."""
    grid = draw(grids())
    return grid, *(draw(bounds_near(grid)) for _ in range(draw(st.integers(1, most))))


def inside(window: Window, width: int, height: int) -> bool:
    return (
        window.col_off >= 0
        and window.row_off >= 0
        and window.width > 0
        and window.height > 0
        and window.col_off + window.width <= width
        and window.row_off + window.height <= height
    )


@given(grid_and_bounds(), st.integers(1, 64))
@example(((Affine(10, 0, 0, 0, -10, 0), 100, 100), (math.inf, -50.0, math.inf, -10.0)), 32)
@example(((Affine(10, 0, 0, 0, -10, 0), 100, 100), (math.nan, -50.0, 20.0, -10.0)), 32)
@example(((Affine(-10, 0, 0, 0, -10, 0), 1, 1), (0.0, 0.0, 1.0, 0.0)), 1)  # east to west
@budget(2000)
def test_aoi_window(case: tuple[tuple[Affine, int, int], Any], step: int) -> None:
    ran("raster: AOI window (snapped)")
    (transform, width, height), bounds = case
    try:
        window = snapped_window(bounds, transform, width, height, step)
    except PoisonError:
        return
    if window is not None:
        assert inside(window, width, height)
        assert window.col_off % step == 0 and window.row_off % step == 0


@given(
    st.sampled_from(CRSS),
    st.floats(-180, 180),
    st.floats(-90, 90),
    st.floats(1e-4, 5),
    st.integers(1, 64),
)
@example("EPSG:32631", 79.0, 0.0, 5.0, 1)  # far outside UTM 31N: infinite bounds
@budget(150)
def test_aoi_window_through_a_crs(crs: str, lon: float, lat: float, size: float, step: int) -> None:
    """An AOI anywhere on Earth, on a 10 m raster of a zone it may be far from."""
    ran("raster: AOI window in a generated CRS")
    aoi = to_crs([box(lon, lat, min(lon + size, 180), min(lat + size, 90))], crs)[0]
    transform, width, height = Affine(10, 0, 300_000, 0, -10, 5_000_000), 10_980, 10_980
    try:
        window = snapped_window(aoi.bounds, transform, width, height, step)
    except PoisonError:
        return
    if window is not None:
        assert inside(window, width, height)


@given(
    grid_and_bounds(most=12),
    st.integers(1, 4096),
)
@budget(1200)
def test_parcel_windows_and_blocks(case: tuple[tuple[Affine, int, int], Any], block: int) -> None:
    ran("raster: parcel windows and blocks")
    (transform, width, height), *bounds = case
    windows = pixel_windows(np.asarray(bounds, np.float64), transform, width, height)
    assert windows.shape == (len(bounds), 4)
    for r0, c0, r1, c1 in windows.tolist():
        if r1 > r0 and c1 > c0:
            assert 0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width
    for window, members in blocks(windows, block):
        assert inside(window, width, height)
        for r0, c0, r1, c1 in windows[members].tolist():
            assert window.row_off <= r0 and r1 <= window.row_off + window.height
            assert window.col_off <= c0 and c1 <= window.col_off + window.width


class Band:
    """What `read_window` needs of an open raster: its grid, and a read that checks the
    window it is asked for."""

    def __init__(self, transform: Affine, width: int, height: int) -> None:
        self.transform, self.width, self.height = transform, width, height

    def read(self, index: int, window: Window) -> np.ndarray:
        assert inside(window, self.width, self.height), (window, self.width, self.height)
        return np.zeros((int(window.height), int(window.width)), np.uint16)


@given(
    st.sampled_from([10.0, 20.0, 60.0]),
    st.sampled_from([10.0, 20.0, 60.0]),
    st.integers(1, 2000),
    st.integers(1, 2000),
    st.integers(0, 1999),
    st.integers(0, 1999),
    st.integers(1, 512),
    st.integers(1, 512),
    st.sampled_from([0.0, 5.0, -5.0, 30.0]),
)
@budget(1500)
def test_band_pixels_under_a_reference_window(
    ref_px: float,
    band_px: float,
    width: int,
    height: int,
    col: int,
    row: int,
    cols: int,
    rows: int,
    shift: float,
) -> None:
    """A 10, 20 or 60 m band of the same tile (its origin shifted by a few metres)."""
    ran("raster: band pixels under a window")
    ref = Affine(ref_px, 0, 500_000, 0, -ref_px, 6_000_000)
    window = Window(min(col, width - 1), min(row, height - 1), cols, rows)
    window = Window(
        window.col_off,
        window.row_off,
        min(cols, width - window.col_off),
        min(rows, height - window.row_off),
    )
    extent_x, extent_y = width * ref_px, height * ref_px
    band = Band(
        Affine(band_px, 0, 500_000 + shift, 0, -band_px, 6_000_000 - shift),
        max(1, math.ceil(extent_x / band_px)),
        max(1, math.ceil(extent_y / band_px)),
    )
    data, read = read_window(band, "band.tif", window, ref)  # type: ignore[arg-type]
    assert data.shape == (read.height, read.width)


@st.composite
def polygons(draw: st.DrawFn) -> shapely.Geometry:
    """Polygons, holed, self-intersecting, multi-part, tiny, huge or empty."""
    kind = draw(st.sampled_from(["ring", "box", "holed", "multi", "empty", "point-like"]))
    coord = st.floats(-50, 150)
    if kind == "ring":
        points = draw(st.lists(st.tuples(coord, coord), min_size=3, max_size=12))
        return shapely.Polygon(points)  # may cross itself
    if kind == "box":
        x, y = draw(coord), draw(coord)
        return box(x, y, x + draw(st.floats(0, 200)), y + draw(st.floats(0, 200)))
    if kind == "holed":
        x, y = draw(coord), draw(coord)
        return box(x, y, x + 40, y + 40).difference(box(x + 10, y + 10, x + 30, y + 30))
    if kind == "multi":
        return shapely.MultiPolygon([box(0, 0, 5, 5), box(draw(coord), draw(coord), 120, 120)])
    if kind == "empty":
        return shapely.Polygon()
    x, y = draw(coord), draw(coord)
    return box(x, y, x + 1e-6, y + 1e-6)


@given(
    st.lists(polygons(), min_size=1, max_size=6),
    st.integers(1, 120),
    st.integers(1, 120),
    st.sampled_from([(1.0, -1.0), (0.5, -0.5), (2.0, -2.0), (1.0, 1.0)]),
    st.sampled_from([0.0, 0.3]),
)
@example([shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])], 4, 4, (1.0, -1.0), 0.0)
@budget(1200)
def test_parcel_pixels_lie_on_the_grid(
    geoms: list[shapely.Geometry],
    height: int,
    width: int,
    pixel: tuple[float, float],
    rotation: float,
) -> None:
    ran("raster: parcel pixels (scanlines)")
    transform = Affine(pixel[0], rotation, 0.0, 0.0, pixel[1], 100.0)
    try:
        pixels, labels = scanline_pixels(geoms, transform, height, width)
    except PoisonError:
        assert rotation != 0.0
        return
    assert ((pixels >= 0) & (pixels < height * width)).all()
    assert ((labels >= 0) & (labels < len(geoms))).all()
    assert len(pixels) == len(labels)


@given(
    st.integers(1, 130),
    st.integers(1, 130),
    st.sampled_from([(32, 32), (32, 8), (32, 16), (16, 32), (8, 8)]),
    st.floats(0, 1),
    st.tuples(st.floats(-500, 1800), st.floats(-500, 1800), st.floats(0, 2000)),
)
@budget(600)
def test_lcz_patches_lie_in_the_stack(
    rows: int,
    cols: int,
    grid: tuple[int, int],
    min_valid: float,
    aoi: tuple[float, float, float],
) -> None:
    ran("raster: LCZ patches")
    transform = Affine(10, 0, 0, 0, -10, 1300)
    valid = np.ones((rows, cols), bool)
    valid[::3, ::5] = False
    stack = BandStack(
        reflectance=np.zeros((10, rows, cols), np.float32),
        valid=valid,
        transform=transform,
        crs=CRS.from_epsg(32631),
        aoi=box(aoi[0], aoi[1] - aoi[2], aoi[0] + aoi[2], aoi[1]),
        row_off=0,
        col_off=0,
    )
    size, stride = grid
    arrays, patches = cut_patches(stack, LczGrid(size, stride, min_valid))
    assert arrays.shape == (len(patches), 10, size, size)
    for patch in patches:
        assert min_valid <= patch.valid_fraction <= 1.0
