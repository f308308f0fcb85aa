"""Writing small test rasters: one band, Cloud-Optimized GeoTIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio


def write_cog(
    path: Path, array: npt.NDArray[np.generic], transform: rasterio.Affine, epsg: int, nodata: float
) -> str:
    """Write `array` as a one-band COG in EPSG:`epsg`; returns the path as a string."""
    with rasterio.open(
        path,
        "w",
        driver="COG",
        dtype=str(array.dtype),
        count=1,
        width=array.shape[1],
        height=array.shape[0],
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=nodata,
        compress="DEFLATE",
    ) as dst:
        dst.write(array, 1)
    return str(path)
