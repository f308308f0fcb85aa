"""Writing small test rasters (one band, Cloud-Optimized GeoTIFF), and the broken copies
of real ones that bad-input tests feed the chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def reproject_cog(src_path: Path, dst_path: Path, epsg: int) -> str:
    """A copy of a one-band raster warped into EPSG:`epsg` (nearest neighbour), as a COG."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src_path) as src:
        dst_crs = f"EPSG:{epsg}"
        transform, width, height = calculate_default_transform(
            src.crs, dst_crs, src.width, src.height, *src.bounds
        )
        out = np.full((height, width), src.nodata if src.nodata is not None else 0, src.dtypes[0])
        reproject(
            rasterio.band(src, 1),
            out,
            dst_transform=transform,
            dst_crs=dst_crs,
            resampling=Resampling.nearest,
        )
        return write_cog(dst_path, out, transform, epsg, src.nodata)


def rewrite_cog(
    src_path: Path, dst_path: Path, change: Callable[[npt.NDArray[np.generic]], npt.NDArray[Any]]
) -> str:
    """A copy of a one-band raster with its values changed by `change` (which may change
    the data type: float32 for NaN), on the same grid, as a COG."""
    with rasterio.open(src_path) as src:
        values = change(src.read(1))
        return write_cog(dst_path, values, src.transform, src.crs.to_epsg(), src.nodata)


def truncate_file(src_path: Path, dst_path: Path, keep: float = 0.5) -> str:
    """The first `keep` share of a file's bytes: a COG cut short by a failed transfer."""
    data = Path(src_path).read_bytes()
    Path(dst_path).write_bytes(data[: int(len(data) * keep)])
    return str(dst_path)
