"""Real sample passes for the demo: the WorldCereal cube as Sentinel-2 and Sentinel-1
scenes in STAC.

Each monthly composite of `data/worldcereal/worldcereal_preprocessed_inputs.nc` becomes
two scenes: Sentinel-2 (a Cloud-Optimized GeoTIFF per band, uint16 digital numbers,
65535 = no data) and Sentinel-1 (VV and VH σ⁰, uint16 as the WorldCereal/openEO chain
encodes dB), each a STAC item with its real footprint, date and assets, in a static
catalog.
The output is deterministic, so building it twice gives the same catalog.

The composites have no acquisition geometry of their own: each item carries the sun
angles of its date at Sentinel-2's 10:30 mean local solar time over the cube's centre
(`revisit_models.biophys.solar_angles`) and a nadir view, which the biophysical model
needs.

The demo's parcels (`demo_parcels`) are WorldCereal's cropland map of the cube,
polygonised and cut by a 100 m grid: real field edges where the map has them, but not a
parcel register (there is no declared crop).

The demo's area units (`demo_units`) are the region AOI cut into four quarters on the
cube's grid: they show the aggregation per unit, and are not administrative units (there
are none in the repository's data; `revisit areas load` takes real ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pystac
import rasterio
from rasterio.features import shapes
from rasterio.io import MemoryFile
from rasterio.shutil import copy as raster_copy
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from revisit_cli.stack import REPO_ROOT
from revisit_common.db.parcels import ParcelRecord
from revisit_common.db.units import UnitRecord
from revisit_models.biophys import solar_angles
from revisit_models.worldcereal import Cube, read_cropland
from revisit_models.worldcereal import read_cube as read_worldcereal_cube

CUBE = REPO_ROOT / "data" / "worldcereal" / "worldcereal_preprocessed_inputs.nc"
CROPLAND = REPO_ROOT / "data" / "worldcereal" / "worldcereal_cropland_classification.nc"
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
COMMON_NAMES = {
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B11": "swir16",
    "B12": "swir22",
}
NODATA = 65535
EPSG = 32631
TILE = "31UFS"  # the Sentinel-2 MGRS tile that holds the cube (UTM 31N, 664 km E, 5612 km N)
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def read_cube(path: Path = CUBE) -> Cube:
    try:
        return read_worldcereal_cube(path)
    except FileNotFoundError as exc:
        raise SystemExit(f"{path} not found: the demo data ships with the repository") from exc


def _write_cog(path: Path, array: npt.NDArray[np.uint16], transform: rasterio.Affine) -> None:
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 1,
        "width": array.shape[1],
        "height": array.shape[0],
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "nodata": NODATA,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(array, 1)
        with mem.open() as src:
            raster_copy(src, str(path), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256)


def build_catalog(
    out_dir: Path, cube_path: Path = CUBE, months: int | None = None, sentinel1: bool = True
) -> Path:
    """Write COGs and a self-contained static STAC catalog of the first `months` (all by
    default): a Sentinel-2 item per month and, with `sentinel1`, a Sentinel-1 item per
    month; returns catalog.json."""
    cube = read_cube(cube_path)
    res = float(cube.x[1] - cube.x[0])
    transform = from_origin(cube.x[0] - res / 2, cube.y[0] + res / 2, res, res)
    rows, cols = cube.dn[BANDS[0]].shape[1:]
    bounds = rasterio.transform.array_bounds(rows, cols, transform)
    footprint = shape(transform_geom(f"EPSG:{EPSG}", "EPSG:4326", mapping(box(*bounds))))
    catalog = pystac.Catalog(
        id="revisit-demo",
        description="Monthly Sentinel-2 L2A and Sentinel-1 sigma0 composites of the "
        "WorldCereal sample cube (Hesbaye, Belgium, 2020-11 .. 2021-10), one item of each "
        "per month.",
    )
    centre = footprint.centroid
    scene = _SceneWriter(out_dir, cube, footprint, transform)
    for t, date in enumerate(cube.dates[:months]):
        zenith, azimuth = solar_angles(date.date(), centre.y)
        optical = {
            "platform": "sentinel-2",
            "constellation": "sentinel-2",
            "s2:mgrs_tile": TILE,
            "proj:epsg": EPSG,
            "revisit:source": "WorldCereal monthly composite (openEO), MIT licence",
            # nominal: the sun at 10:30 local solar time on the composite's date
            "view:sun_elevation": round(90 - zenith, 2),
            "view:sun_azimuth": round(azimuth, 2),
            "view:off_nadir": 0.0,
        }
        bands = {
            band: {
                "eo:bands": [{"name": band, "common_name": COMMON_NAMES[band]}],
                "raster:bands": [
                    {"nodata": NODATA, "data_type": "uint16", "scale": 1e-4, "offset": 0.0}
                ],
            }
            for band in BANDS
        }
        name = f"WORLDCEREAL_S2_{TILE}_{date:%Y%m%d}_MONTHLY"
        catalog.add_item(scene.item(name, t, "sentinel-2-l2a", optical, bands))
        if not sentinel1:
            continue
        radar = {
            "platform": "sentinel-1",
            "constellation": "sentinel-1",
            "sar:instrument_mode": "IW",
            "sar:product_type": "GRD",
            "sar:polarizations": ["VV", "VH"],
            "proj:epsg": EPSG,
            # a monthly composite: no single orbit, so no sat:relative_orbit
            "revisit:source": "WorldCereal monthly Sentinel-1 sigma0 composite (openEO), "
            "MIT licence",
        }
        # σ⁰ as WorldCereal's openEO chain wrote it (uint16, dB = 20·log10(dn) − 83)
        polarisations = {
            p: {
                "revisit:quantity": "db_uint16",
                "raster:bands": [{"nodata": NODATA, "data_type": "uint16"}],
            }
            for p in ("vv", "vh")  # asset keys as Earth Search and Planetary Computer
        }
        name = f"WORLDCEREAL_S1_{date:%Y%m%d}_MONTHLY"
        catalog.add_item(scene.item(name, t, "sentinel-1-grd", radar, polarisations))
    catalog.normalize_hrefs(str(out_dir / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog" / "catalog.json"


@dataclass(frozen=True)
class _SceneWriter:
    """Items of the cube's months: a COG per asset, of the cube's layer of that name
    (upper case: "B04", "VV")."""

    out_dir: Path
    cube: Cube
    footprint: BaseGeometry
    transform: rasterio.Affine

    def item(
        self,
        scene_id: str,
        t: int,
        collection: str,
        properties: dict[str, Any],
        assets: dict[str, dict[str, Any]],
    ) -> pystac.Item:
        item = pystac.Item(
            id=scene_id,
            geometry=mapping(self.footprint),
            bbox=list(self.footprint.bounds),
            datetime=self.cube.dates[t],
            properties=properties,
            collection=collection,
        )
        for key, fields in assets.items():
            href = self.out_dir / "cogs" / scene_id / f"{key.upper()}.tif"
            _write_cog(href, self.cube.dn[key.upper()][t], self.transform)
            item.add_asset(
                key,
                pystac.Asset(
                    href=str(href), media_type=COG_MEDIA_TYPE, roles=["data"], extra_fields=fields
                ),
            )
        return item


def demo_parcels(
    cube_path: Path = CUBE, cropland_path: Path = CROPLAND, grid_m: float = 100.0
) -> list[ParcelRecord]:
    """Cropland of WorldCereal's map of the cube, polygonised and cut by a `grid_m` grid;
    pieces of at least 20 pixels (0.2 ha), in EPSG:4326, named by their grid cell."""
    cube = read_cube(cube_path)
    cropland = read_cropland(cropland_path)
    res = float(cube.x[1] - cube.x[0])
    transform = from_origin(cube.x[0] - res / 2, cube.y[0] + res / 2, res, res)
    x0, y1 = transform.c, transform.f
    records: list[ParcelRecord] = []
    for geojson, _value in shapes(cropland.astype(np.uint8), mask=cropland, transform=transform):
        field = shape(geojson)
        gx0, gy0, gx1, gy1 = field.bounds
        for i in range(int((gx0 - x0) // grid_m), math.ceil((gx1 - x0) / grid_m)):
            for j in range(int((y1 - gy1) // grid_m), math.ceil((y1 - gy0) / grid_m)):
                cell = box(
                    x0 + i * grid_m, y1 - (j + 1) * grid_m, x0 + (i + 1) * grid_m, y1 - j * grid_m
                )
                piece = field.intersection(cell)
                if piece.area < 20 * res * res or piece.geom_type not in (
                    "Polygon",
                    "MultiPolygon",
                ):
                    continue
                records.append(
                    ParcelRecord(
                        f"wc-{len(records):03d}-{i}-{j}",
                        shape(transform_geom(f"EPSG:{EPSG}", "EPSG:4326", mapping(piece))),
                    )
                )
    return records


def demo_units(name: str, aoi_wkt: str) -> list[UnitRecord]:
    """The AOI (EPSG:4326) cut into four quarters at the centre of its bounds on the
    cube's grid (EPSG)."""
    import shapely
    from pyproj import Transformer

    there = Transformer.from_crs(4326, EPSG, always_xy=True).transform
    back = Transformer.from_crs(EPSG, 4326, always_xy=True).transform
    local = shapely.transform(shapely.from_wkt(aoi_wkt), there, interleaved=False)
    x0, y0, x1, y1 = local.bounds
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    quarters = {
        "nw": box(x0, ym, xm, y1),
        "ne": box(xm, ym, x1, y1),
        "sw": box(x0, y0, xm, ym),
        "se": box(xm, y0, x1, ym),
    }
    return [
        UnitRecord(
            f"{name}-{q}",
            shapely.transform(local.intersection(cell), back, interleaved=False),
            f"{q.upper()} quarter",
        )
        for q, cell in quarters.items()
    ]
