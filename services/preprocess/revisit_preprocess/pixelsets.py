"""Pixel sets of parcels (the input of PSE-TAE), read block by block from the band COGs.

For one scene and a set of parcels: each parcel gets S pixels sampled among its valid
pixels (every band has data, and the SCL class is not cloud, shadow, snow...), without
replacement when it has at least S, with replacement otherwise. 20 m
bands are read at their native resolution and taken at the 20 m pixel under each 10 m
pixel (nearest neighbour), so no pixel value is interpolated and only the windows around
parcels are decoded.

Parcels are grouped into blocks of the reference (10 m) grid; one window is read per
block, wide enough for all its parcels, so a parcel is never cut. Sampling is seeded by
(parcel id, acquisition), so a replay gives the same pixels; see `sample_positions`.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_preprocess.raster import (
    GDAL_ENV,
    SCL_INVALID,
    nodata_of,
    open_band,
    open_bands,
    plausible,
    read_window,
    to_crs,
)

#: Stored pixel values are reflectance × VALUE_SCALE, as int16 (−3.27 … 3.27 reflectance).
VALUE_SCALE = 10_000.0
#: The geometric features of PSE-TAE, in the order of the `geomfeat` array.
GEOMFEAT = ("perimeter_m", "area_px", "cover_ratio", "perimeter_per_area")


@dataclass(frozen=True)
class Parcel:
    id: int
    geometry: BaseGeometry  # EPSG:4326 unless said otherwise


@dataclass(frozen=True)
class PixelSetConfig:
    pixels: int = 64  # S, per parcel and pass
    block_px: int = 1024  # parcels are grouped by blocks of this many 10 m pixels


DEFAULT_PIXEL_SETS = PixelSetConfig()


@dataclass(frozen=True)
class ParcelValues:
    """What one pass gives for the parcels with at least one valid pixel, by parcel id."""

    parcel_ids: npt.NDArray[np.int64]  # (P,)
    # pixel sets: int16 (P, C, S), reflectance × VALUE_SCALE; S1: float32 (P, F) statistics
    values: npt.NDArray[Any]
    channels: list[str]  # names of the C bands or F statistics
    n_valid: npt.NDArray[np.int32]  # (P,): valid pixels of the parcel in this pass
    geomfeat: npt.NDArray[np.float32]  # (P, 4), see GEOMFEAT
    in_scene: int  # parcels with at least one pixel centre (or their point) on the rasters
    crs: CRS

    @property
    def observed(self) -> int:
        return len(self.parcel_ids)


def geometric_features(
    geometries: Sequence[BaseGeometry], pixel_area: float
) -> npt.NDArray[np.float32]:
    """PSE-TAE's geometric features, from geometries in a metric CRS."""
    geoms = np.asarray(geometries, dtype=object)
    if geoms.size == 0:
        return np.zeros((0, len(GEOMFEAT)), np.float32)
    perimeter = shapely.length(geoms)
    area = shapely.area(geoms)
    envelope = shapely.area(shapely.envelope(geoms))
    with np.errstate(divide="ignore", invalid="ignore"):
        cover = np.where(envelope > 0, area / envelope, 0.0)
        ratio = np.where(area > 0, perimeter / area, 0.0)
    return np.column_stack([perimeter, area / pixel_area, cover, ratio]).astype(np.float32)


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A counter-based generator: 64 well-mixed bits per input (Steele et al., 2014)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return out


def sample_positions(
    parcel_ids: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    acquisition: str,
    size: int,
) -> npt.NDArray[np.int64]:
    """(P, size) positions among each parcel's `count` valid pixels (in raster order).

    Seeded by (parcel id, acquisition), so a replay draws the same pixels. With at
    least `size` pixels: a uniform random subset (the `size` smallest of one random key
    per pixel), in raster order, no pixel twice. With fewer: uniform draws with
    replacement.
    """
    salt = np.uint64(zlib.crc32(acquisition.encode()))
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        seeds = _splitmix64(parcel_ids.astype(np.uint64) * np.uint64(0x100000001B3) ^ salt)
        keys = seeds[:, None] + np.arange(size, dtype=np.uint64)[None, :] * golden
    u = (_splitmix64(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    out = np.minimum(np.floor(u * counts[:, None]).astype(np.int64), counts[:, None] - 1)
    for p in np.flatnonzero(counts >= size):
        with np.errstate(over="ignore"):
            pixel_keys = _splitmix64(seeds[p] + np.arange(counts[p], dtype=np.uint64) * golden)
        out[p] = np.sort(np.argpartition(pixel_keys, size - 1)[:size])
    return out


def scanline_pixels(
    geoms: Sequence[BaseGeometry], transform: Affine, height: int, width: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The pixels whose centre lies inside each geometry (even-odd rule, holes and
    multi-part geometries included), on a north-up grid of height × width.

    Returns flat pixel indices and the index of their geometry, ordered by geometry,
    then in raster order: the same pixels as burning each geometry alone with GDAL's
    rasterize (pixel centres), without building a label image, so overlapping
    geometries each keep their pixels.
    """
    if transform.b != 0 or transform.d != 0:
        raise PoisonError("rotated rasters are not supported")
    parts, part_of = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    empty = np.zeros(0, np.int64)
    if len(coords) < 2:
        return empty, empty
    # pixel coordinates: x = column, y = row (rows grow downwards)
    x = (coords[:, 0] - transform.c) / transform.a
    y = (coords[:, 1] - transform.f) / transform.e
    same = coord_of[:-1] == coord_of[1:]
    x0, y0, x1, y1 = x[:-1][same], y[:-1][same], x[1:][same], y[1:][same]
    label = part_of[ring_of[coord_of[:-1][same]]]
    # an edge crosses the centre line of row r (y = r + 0.5) when ymin <= r + 0.5 < ymax
    first = np.ceil(np.minimum(y0, y1) - 0.5).astype(np.int64)
    stop = np.ceil(np.maximum(y0, y1) - 0.5).astype(np.int64)
    n = np.maximum(stop - first, 0)
    edge = np.repeat(np.arange(len(n)), n)
    row = first[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(n) - n, n))
    yc = row + 0.5
    xc = x0[edge] + (yc - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    lab = label[edge]
    keep = (row >= 0) & (row < height)
    row, xc, lab = row[keep], xc[keep], lab[keep]
    order = np.lexsort((xc, row, lab))
    row, xc, lab = row[order], xc[order], lab[order]
    # crossings pair up along each row of each geometry: inside between 1st and 2nd, ...
    start = np.clip(np.ceil(xc[0::2] - 0.5), 0, width).astype(np.int64)
    end = np.clip(np.ceil(xc[1::2] - 0.5), 0, width).astype(np.int64)
    length = np.maximum(end - start, 0)
    span_row, span_lab = row[0::2], lab[0::2]
    total = int(length.sum())
    if not total:
        return empty, empty
    offsets = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
    pixels = np.repeat(span_row * width + start, length) + offsets
    return pixels, np.repeat(span_lab, length).astype(np.int64)


def pixel_windows(
    bounds: npt.NDArray[np.float64], transform: Affine, width: int, height: int
) -> npt.NDArray[np.int64]:
    """(N, 4) pixel windows row0, col0, row1, col1 of the bounds, clipped to the raster
    (empty when row1 <= row0 or col1 <= col0)."""
    inv = ~transform
    c0, r0 = inv @ (bounds[:, 0], bounds[:, 3])
    c1, r1 = inv @ (bounds[:, 2], bounds[:, 1])
    rows0 = np.clip(np.floor(np.minimum(r0, r1)), 0, height)
    rows1 = np.clip(np.ceil(np.maximum(r0, r1)), 0, height)
    cols0 = np.clip(np.floor(np.minimum(c0, c1)), 0, width)
    cols1 = np.clip(np.ceil(np.maximum(c0, c1)), 0, width)
    return np.column_stack([rows0, cols0, rows1, cols1]).astype(np.int64)


def blocks(windows: npt.NDArray[np.int64], block_px: int) -> Iterator[tuple[Window, list[int]]]:
    """Parcels (indices into `windows`) grouped by the block of their top-left pixel, with
    the window that covers all of them. Parcels off the raster are left out."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (r0, c0, r1, c1) in enumerate(windows.tolist()):
        if r1 > r0 and c1 > c0:
            groups[(r0 // block_px, c0 // block_px)].append(i)
    for key in sorted(groups):
        members = groups[key]
        w = windows[members]
        r0, c0 = int(w[:, 0].min()), int(w[:, 1].min())
        r1, c1 = int(w[:, 2].max()), int(w[:, 3].max())
        yield Window(c0, r0, c1 - c0, r1 - r0), members


def _index_map(
    ref_transform: Affine,
    band_transform: Affine,
    window: Window,
    read: Window,
    shape: tuple[int, ...],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each row and column of `window` (reference grid), the row and column of the
    band array read over `read` (band grid) under its pixel centre."""
    cols = np.arange(window.width) + window.col_off + 0.5
    rows = np.arange(window.height) + window.row_off + 0.5
    xs = ref_transform.c + cols * ref_transform.a
    ys = ref_transform.f + rows * ref_transform.e
    inv = ~band_transform
    band_cols = np.floor(inv.a * xs + inv.c).astype(np.int64) - int(read.col_off)
    band_rows = np.floor(inv.e * ys + inv.f).astype(np.int64) - int(read.row_off)
    return np.clip(band_rows, 0, shape[0] - 1), np.clip(band_cols, 0, shape[1] - 1)


@dataclass(frozen=True)
class ParcelBlock:
    """The pixels of the parcels of one block: band values where a parcel is, and which of
    them are valid, grouped by parcel (in raster order inside each parcel)."""

    members: list[int]  # indices into the parcel list
    raw: npt.NDArray[np.float32]  # (C, n): digital numbers of the parcels' pixels
    valid: npt.NDArray[np.int64]  # columns of `raw` that are valid, grouped by member
    counts: npt.NDArray[np.int64]  # valid pixels per member
    starts: npt.NDArray[np.int64]  # where each member's columns start in `valid`
    covered: npt.NDArray[np.int64]  # pixels per member, valid or not


class ParcelReader:
    """Reads the pixels of parcels from the bands of one scene (first band = reference
    grid), block by block; use as a context manager (it holds the open rasters)."""

    def __init__(
        self,
        bands: Sequence[pb.BandAsset],
        scl: pb.BandAsset | None = None,
        require_positive: bool = False,
        reflectance: bool = False,
        epsg: int | None = None,
    ) -> None:
        """`reflectance`: the bands are surface reflectance (scale and offset applied),
        and pixels out of `REFLECTANCE_RANGE` are not valid. `epsg`: the CRS the rasters
        must be in."""
        if not bands:
            raise PoisonError("no band to read")
        self.bands, self.scl, self.require_positive = list(bands), scl, require_positive
        self.reflectance, self.epsg = reflectance, epsg
        self._stack = ExitStack()

    def __enter__(self) -> ParcelReader:
        opened = self._stack
        opened.enter_context(rasterio.Env(**GDAL_ENV))
        self.sources = open_bands(opened, self.bands, self.epsg)
        self.scl_src = opened.enter_context(open_band(self.scl)) if self.scl is not None else None
        ref = self.sources[0]
        self.crs, self.transform = ref.crs, ref.transform
        self.width, self.height = ref.width, ref.height
        self.nodata = [nodata_of(b, s) for b, s in zip(self.bands, self.sources, strict=True)]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def pixel_area(self) -> float:
        return float(abs(self.transform.a * self.transform.e))

    def geometries(self, parcels: Sequence[Parcel], parcels_crs: str | None) -> list[BaseGeometry]:
        geoms = [p.geometry for p in parcels]
        return geoms if parcels_crs is None else to_crs(geoms, self.crs, parcels_crs)

    def blocks(self, geoms: Sequence[BaseGeometry], block_px: int) -> Iterator[ParcelBlock]:
        windows = pixel_windows(
            shapely.bounds(np.asarray(geoms, dtype=object)).reshape(-1, 4),
            self.transform,
            self.width,
            self.height,
        )
        for window, members in blocks(windows, block_px):
            yield self._block(window, members, geoms)

    def _pick(
        self,
        src: rasterio.DatasetReader,
        href: str,
        window: Window,
        labelled: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
    ) -> npt.NDArray[Any]:
        """The values of `src` under the labelled pixels of `window` (reference grid)."""
        data, read = read_window(src, href, window, self.transform)
        if src.transform == self.transform and read == window:
            picked: npt.NDArray[Any] = data.ravel()[labelled]  # same grid: no mapping
            return picked
        row_map, col_map = _index_map(self.transform, src.transform, window, read, data.shape)
        mapped: npt.NDArray[Any] = data[row_map[rows], col_map[cols]]
        return mapped

    def _block(
        self, window: Window, members: list[int], geoms: Sequence[BaseGeometry]
    ) -> ParcelBlock:
        h, w = int(window.height), int(window.width)
        win_transform = rasterio.windows.transform(window, self.transform)
        labelled, pixel_label = scanline_pixels([geoms[m] for m in members], win_transform, h, w)
        # Parcels smaller than a pixel (or too thin to cover a pixel centre) get the
        # pixel under their representative point.
        covered = np.bincount(pixel_label, minlength=len(members))
        extra_idx, extra_lab = [], []
        for k in np.flatnonzero(covered == 0):
            point = geoms[members[k]].representative_point()
            col, row = ~win_transform @ (point.x, point.y)
            if 0 <= row < h and 0 <= col < w:
                extra_idx.append(int(row) * w + int(col))
                extra_lab.append(k)
                covered[k] = 1
        if extra_idx:
            labelled = np.concatenate([labelled, np.asarray(extra_idx, np.int64)])
            pixel_label = np.concatenate([pixel_label, np.asarray(extra_lab, np.int64)])
        rows, cols = np.divmod(labelled, w)
        raw = np.empty((len(self.bands), labelled.size), np.float32)
        valid = np.ones(labelled.size, bool)
        for b, (band, src) in enumerate(zip(self.bands, self.sources, strict=True)):
            picked = self._pick(src, band.href, window, labelled, rows, cols)
            nodata = self.nodata[b]
            if nodata is not None and not math.isnan(nodata):
                valid &= picked != nodata
            raw[b] = picked
        if self.reflectance:
            scales = np.array([b.scale for b in self.bands], np.float32)[:, None]
            offsets = np.array([b.offset for b in self.bands], np.float32)[:, None]
            valid &= plausible(raw * scales + offsets)
        else:
            valid &= np.isfinite(raw).all(axis=0)
        if self.require_positive:
            valid &= (raw > 0).all(axis=0)
        if self.scl_src is not None and self.scl is not None:
            classes = self._pick(self.scl_src, self.scl.href, window, labelled, rows, cols)
            valid &= ~np.isin(classes, SCL_INVALID)
        good_label = pixel_label[valid]
        counts = np.bincount(good_label, minlength=len(members))
        return ParcelBlock(
            members=members,
            raw=raw,
            valid=np.flatnonzero(valid)[np.argsort(good_label, kind="stable")],
            counts=counts,
            starts=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
            covered=covered,
        )


#: Values of the observed parcels of one block: (block, positions of the observed
#: members in `block.members`, their parcel ids) -> one row per observed parcel.
Summary = Callable[[ParcelBlock, npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[Any]]


def collect(
    reader: ParcelReader,
    parcels: Sequence[Parcel],
    parcels_crs: str | None,
    block_px: int,
    summarize: Summary,
    channels: list[str],
    empty: npt.NDArray[Any],
) -> ParcelValues:
    """Read the parcels block by block and keep `summarize`'s rows, in parcel id order."""
    rows: list[npt.NDArray[Any]] = []
    ids: list[int] = []
    counts: list[int] = []
    members: list[int] = []
    in_scene = 0
    geoms = reader.geometries(parcels, parcels_crs)
    for block in reader.blocks(geoms, block_px):
        in_scene += int(np.count_nonzero(block.covered))
        observed = np.flatnonzero(block.counts)
        if not observed.size:
            continue
        chosen = [block.members[k] for k in observed]
        chosen_ids = [parcels[m].id for m in chosen]
        rows.append(summarize(block, observed, np.asarray(chosen_ids, np.int64)))
        ids.extend(chosen_ids)
        counts.extend(block.counts[observed].tolist())
        members.extend(chosen)
    order = np.argsort(np.asarray(ids, np.int64), kind="stable")
    return ParcelValues(
        parcel_ids=np.asarray(ids, np.int64)[order],
        values=(np.concatenate(rows) if rows else empty)[order],
        channels=channels,
        n_valid=np.asarray(counts, np.int32)[order],
        geomfeat=geometric_features([geoms[m] for m in members], reader.pixel_area)[order],
        in_scene=in_scene,
        crs=reader.crs,
    )


def extract_pixel_sets(
    bands: Sequence[pb.BandAsset],
    scl: pb.BandAsset | None,
    parcels: Sequence[Parcel],
    acquisition: str,
    config: PixelSetConfig = DEFAULT_PIXEL_SETS,
    parcels_crs: str | None = "EPSG:4326",
    epsg: int | None = None,
) -> ParcelValues:
    """Pixel sets of `parcels` on the scene of `bands` (first band = 10 m reference; in
    EPSG:`epsg` when given)."""
    size = config.pixels
    scales = np.array([b.scale for b in bands], np.float64)[:, None, None]
    offsets = np.array([b.offset for b in bands], np.float64)[:, None, None]

    def pixel_sets(
        block: ParcelBlock, observed: npt.NDArray[np.int64], ids: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int16]:
        positions = sample_positions(ids, block.counts[observed], acquisition, size)
        columns = block.valid[block.starts[observed][:, None] + positions]  # (P, S)
        reflectance = block.raw[:, columns] * scales + offsets  # (C, P, S)
        scaled = np.round(reflectance * VALUE_SCALE).clip(-32768, 32767).astype(np.int16)
        by_parcel: npt.NDArray[np.int16] = scaled.transpose(1, 0, 2)  # (P, C, S)
        return by_parcel

    with ParcelReader(bands, scl, reflectance=True, epsg=epsg) as reader:
        return collect(
            reader,
            parcels,
            parcels_crs,
            config.block_px,
            pixel_sets,
            [b.band for b in bands],
            np.zeros((0, len(bands), size), np.int16),
        )
