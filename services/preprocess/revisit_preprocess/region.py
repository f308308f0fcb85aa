"""Per-pixel inputs of the land-cover and biophysical models over a `region` AOI: the 10
bands as reflectance on the 10 m grid, spectral indices, the validity mask (AOI, no data,
SCL), the scene's sun and view angles, and the AOI's area units on the same grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import rasterio.features
from shapely.geometry.base import BaseGeometry

from revisit_preprocess.lcz import LCZ_BANDS
from revisit_preprocess.raster import BandStack, to_crs

#: Normalised differences (a − b) / (a + b), by band name.
INDICES = {
    "NDVI": ("B08", "B04"),  # vegetation
    "NDWI": ("B03", "B08"),  # open water (McFeeters)
    "NDBI": ("B11", "B08"),  # built-up
    "NDMI": ("B08", "B11"),  # canopy moisture
}


@dataclass(frozen=True)
class RegionInputs:
    reflectance: npt.NDArray[np.float32]  # (C, H, W), LCZ_BANDS order, 0 where invalid
    valid: npt.NDArray[np.bool_]  # (H, W): inside the AOI and observed
    indices: npt.NDArray[np.float32]  # (K, H, W), INDICES order, NaN where invalid
    inside: npt.NDArray[np.bool_]  # (H, W): the AOI's pixels on the rasters

    @property
    def valid_fraction(self) -> float:
        total = int(self.inside.sum())
        return float(self.valid.sum() / total) if total else 0.0


def region_inputs(stack: BandStack) -> RegionInputs:
    """From a stack read in LCZ_BANDS order over the AOI's window."""
    rows, cols = stack.valid.shape
    inside = rasterio.features.rasterize(
        [(stack.aoi, 1)], out_shape=(rows, cols), transform=stack.transform, fill=0, dtype="uint8"
    ).astype(bool)
    valid = inside & stack.valid
    position = {name: i for i, name in enumerate(LCZ_BANDS)}
    indices = np.full((len(INDICES), rows, cols), np.nan, np.float32)
    for k, (a, b) in enumerate(INDICES.values()):
        ra, rb = stack.reflectance[position[a]], stack.reflectance[position[b]]
        total = ra + rb
        ok = valid & (np.abs(total) > 1e-6)
        indices[k][ok] = (ra[ok] - rb[ok]) / total[ok]
    reflectance = np.where(valid, stack.reflectance, 0.0).astype(np.float32)
    return RegionInputs(reflectance, valid, indices, inside)


def unit_raster(
    units: Sequence[tuple[str, BaseGeometry]], stack: BandStack, inside: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.uint16], list[str]]:
    """The AOI's area units (key, geometry in EPSG:4326) burnt onto the stack's grid: 0
    outside every unit and outside the AOI (`inside`, `RegionInputs.inside`), i for the
    i-th key returned (units that no pixel centre of the AOI falls in are not returned).
    Where units overlap, the later in `units` wins."""
    rows, cols = stack.valid.shape
    if not units:
        return np.zeros((rows, cols), np.uint16), []
    projected = to_crs([geom for _, geom in units], stack.crs)
    burnt = rasterio.features.rasterize(
        [(geom, i + 1) for i, geom in enumerate(projected)],
        out_shape=(rows, cols),
        transform=stack.transform,
        fill=0,
        dtype="uint16",
    )
    burnt[~inside] = 0
    present = np.unique(burnt[burnt > 0])
    renumber = np.zeros(len(units) + 1, np.uint16)
    renumber[present] = np.arange(1, len(present) + 1, dtype=np.uint16)
    keys = [units[i - 1][0] for i in present.tolist()]
    return renumber[burnt], keys
