"""The real eo-learn patch (Slovenia, 68 dates) as Sentinel-2 scenes of COGs.

`data/eo-learn` holds real Sentinel-2 NDVI, the real cloud masks (CLM) of the same dates
and 88 real parcels (RABA land-use register). Raw bands are not part of that dataset, so
each date becomes a scene whose band assets all point at one COG of its NDVI (int16,
×10000, scale 1e-4): pixel sets carry NDVI in every band. The cloud mask becomes an SCL
raster: class 9 (cloud, high probability) where CLM is set, 4 (vegetation) elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyogrio
import rasterio
import shapely
from rasterio.transform import from_bounds

from revisit_common import events_pb2 as pb
from revisit_common.events import SCL_BAND
from revisit_preprocess.lcz import LCZ_BANDS
from revisit_preprocess.pixelsets import Parcel
from tests.rasters import write_cog

DATA = Path(__file__).resolve().parents[1] / "data" / "eo-learn"
EPSG = 32633
NODATA = -32768


@dataclass(frozen=True)
class EoLearnPatch:
    ndvi: npt.NDArray[np.float32]  # (T, rows, cols)
    cloud: npt.NDArray[np.bool_]  # (T, rows, cols)
    dates: list[datetime]
    transform: rasterio.Affine
    parcels: list[Parcel]  # in EPSG:32633
    labels: list[str]  # LULC_NAME of each parcel

    def ndvi_dn(self, t: int) -> npt.NDArray[np.int16]:
        return np.round(self.ndvi[t] * 10_000).astype(np.int16)


def load_patch() -> EoLearnPatch:
    ndvi = np.load(DATA / "NDVI.npy")[..., 0]
    cloud = np.load(DATA / "CLM.npy")[..., 0].astype(bool)
    dates = [
        datetime.fromisoformat(d).replace(tzinfo=UTC)
        for d in json.loads((DATA / "timestamps.json").read_text())
    ]
    bbox = json.loads((DATA / "bbox.geojson").read_text())["coordinates"][0]
    xs, ys = [p[0] for p in bbox], [p[1] for p in bbox]
    rows, cols = ndvi.shape[1:]
    transform = from_bounds(min(xs), min(ys), max(xs), max(ys), cols, rows)
    _, _, geoms, fields = pyogrio.raw.read(DATA / "LULC.gpkg", columns=["LULC_NAME"])
    parcels = [Parcel(i + 1, g) for i, g in enumerate(shapely.from_wkb(geoms))]
    return EoLearnPatch(ndvi, cloud, dates, transform, parcels, [str(n) for n in fields[0]])


def write_scenes(patch: EoLearnPatch, out_dir: Path) -> list[pb.SceneDiscovered]:
    """One scene event per date (bands and SCL as COGs under `out_dir`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    for t, date in enumerate(patch.dates):
        ndvi_path, scl_path = out_dir / f"{t:02d}_NDVI.tif", out_dir / f"{t:02d}_SCL.tif"
        if not scl_path.exists():
            write_cog(ndvi_path, patch.ndvi_dn(t), patch.transform, EPSG, NODATA)
            scl = np.where(patch.cloud[t], 9, 4).astype(np.uint8)
            write_cog(scl_path, scl, patch.transform, EPSG, 0)
        scene = pb.SceneDiscovered(tile_id="33TVM", sensor="sentinel-2")
        scene.header.scene_id = f"EOLEARN_{date:%Y%m%dT%H%M%S}"
        scene.header.acquired_at.FromDatetime(date)
        scene.acquisition_key = f"S2:33TVM:{date:%Y%m%dT%H%M%S}"
        for band in LCZ_BANDS:
            scene.bands.add(
                band=band,
                href=str(ndvi_path),
                scale=1e-4,
                offset=0.0,
                nodata=NODATA,
                has_nodata=True,
            )
        scene.bands.add(band=SCL_BAND, href=str(scl_path), scale=1.0, nodata=0, has_nodata=True)
        scenes.append(scene)
    return scenes
