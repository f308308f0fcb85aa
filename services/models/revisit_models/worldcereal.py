"""The real WorldCereal data of the repository, written as pixel-set datasets.

Two sources (data/worldcereal, MIT, from WorldCereal/worldcereal-classification):

- `test_public_extractions.parquet`: 500 labelled samples of 2017 (Uganda, South
  Sudan), each one pixel with 12 monthly composites (Dec 2016 .. Nov 2017) of
  Sentinel-2 L2A (10 bands with B8A, uint16 reflectance × 10000, 65535 = no data) and
  Sentinel-1 VV/VH; crop labels in several nomenclatures (`sampling_label`,
  `label_full`, `finetune_class`, `ewoc_code`) and an H3 level-3 cell (a ~12,000 km²
  region) for spatial hold-out. A sample is a pixel, so each "pixel set" has one pixel
  and there is no parcel geometry.
- `worldcereal_preprocessed_inputs.nc` with `worldcereal_cropland_classification.nc`:
  the 1 km² cube of tile 31UFS (Belgium), 12 monthly composites 2020-11 .. 2021-10, and
  WorldCereal's own cropland map of it (see `read_cropland` for how its classes
  read). The cube is cut into blocks of `block` × `block`
  pixels; a block whose pixels agree at ≥ `purity` becomes a "parcel" labelled
  cropland / non_cropland. These labels are the output of WorldCereal's classifier,
  not field truth: a model trained on them learns to reproduce that map. (The cube's
  crop-type output gives one class to almost every pixel, so it is not used.) The cube
  has no B8A: B08 is written in its place.

Sentinel-1 values are uint16-encoded by the WorldCereal/openEO chain:
dB = 20·log10(dn) − 83 (0 and 65535 are no data). Each pass becomes the per-parcel
statistics that the preprocess service computes: mean in dB of the linear mean, standard
deviation of dB, and VH − VV.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from revisit_models.pixelset_data import dates_json, write_meta, write_parcel
from revisit_models.psetae import GEOMFEAT, S1_FEATURES, S2_BANDS

NODATA = 65535
LICENCE = "MIT (data/worldcereal/LICENSE), WorldCereal/worldcereal-classification"
CUBE_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
NOMENCLATURES = ("sampling_label", "label_full", "finetune_class", "ewoc_code")


def s1_db(dn: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """WorldCereal uint16 backscatter to dB; NaN where there is no data."""
    values = np.asarray(dn, np.float64)
    out = np.full(values.shape, np.nan)
    ok = (values > 0) & (values < NODATA)
    out[ok] = 20.0 * np.log10(values[ok]) - 83.0
    return out


def s1_statistics(
    vv_db: npt.NDArray[np.float64], vh_db: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """(T, P) dB of the pixels of a parcel per pass -> (T, 5) S1_FEATURES, NaN = no pass."""
    rows = []
    for vv, vh in zip(vv_db, vh_db, strict=True):
        ok = np.isfinite(vv) & np.isfinite(vh)
        if not ok.any():
            rows.append([np.nan] * len(S1_FEATURES))
            continue
        mean_vv = 10 * np.log10(np.mean(10 ** (vv[ok] / 10)))
        mean_vh = 10 * np.log10(np.mean(10 ** (vh[ok] / 10)))
        rows.append([mean_vv, mean_vh, vv[ok].std(), vh[ok].std(), mean_vh - mean_vv])
    return np.asarray(rows, np.float32)


def _month_starts(first: date, count: int) -> list[date]:
    out, year, month = [], first.year, first.month
    for _ in range(count):
        out.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def convert_extractions(
    parquet: Path, out_dir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The labelled extractions as a pixel-set dataset (one pixel per sample)."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]  # only this converter

    table = pq.read_table(parquet).to_pydict()
    n = len(table["sample_id"])
    steps = int(table["available_timesteps"][0])
    dates = _month_starts(date.fromisoformat(table["start_date"][0]), steps)

    def column(band: str, t: int) -> npt.NDArray[np.float64]:
        for suffix in ("10m", "20m"):
            key = f"OPTICAL-{band}-ts{t}-{suffix}"
            if key in table:
                return np.asarray(table[key], np.float64)
        raise KeyError(f"{parquet} has no column for {band} at step {t}")

    s2 = np.stack([np.stack([column(b, t) for b in S2_BANDS]) for t in range(steps)])  # (T,C,N)
    s2 = np.where(s2 == NODATA, 0, s2).astype(np.uint16)
    vv = s1_db(np.stack([np.asarray(table[f"SAR-VV-ts{t}-20m"]) for t in range(steps)]))
    vh = s1_db(np.stack([np.asarray(table[f"SAR-VH-ts{t}-20m"]) for t in range(steps)]))
    ids = [f"{i:04d}" for i in range(n)]
    for i, pid in enumerate(ids):
        write_parcel(
            out_dir, pid, s2[:, :, i : i + 1], s1_statistics(vv[:, i : i + 1], vh[:, i : i + 1])
        )
    labels = {
        name: {pid: str(table[name][i]) for i, pid in enumerate(ids)} for name in NOMENCLATURES
    }
    write_meta(out_dir, "labels", labels)
    write_meta(out_dir, "dates", dates_json(dates))
    write_meta(out_dir, "dates_s1", dates_json(dates))
    write_meta(out_dir, "regions", {pid: table["h3_l3_cell"][i] for i, pid in enumerate(ids)})
    write_meta(out_dir, "years", {pid: int(table["year"][i]) for i, pid in enumerate(ids)})
    write_meta(out_dir, "sample_ids", {pid: table["sample_id"][i] for i, pid in enumerate(ids)})
    described = {
        "name": "worldcereal-public-extractions-2017",
        "source": f"{parquet.name}: WorldCereal labelled extractions (Uganda, South Sudan)",
        "licence": LICENCE,
        "channels": list(S2_BANDS),
        "value_scale": 10000,
        "s1_features": list(S1_FEATURES),
        "parcels": n,
        "pixels_per_parcel": 1,
        "dates": [d.isoformat() for d in dates],
        "unobserved_s2_share": round(float((s2 == 0).all(axis=1).mean()), 4),
    }
    write_meta(out_dir, "dataset", described)
    log(f"wrote {n} samples × {steps} months to {out_dir}")
    return described


@dataclass(frozen=True)
class Cube:
    """The WorldCereal cube: band -> (T, rows, cols) uint16 digital numbers (65535 = no
    data; S2 bands by name, Sentinel-1 as "VV" and "VH"), dates, pixel-centre coordinates
    (EPSG:32631)."""

    dn: dict[str, npt.NDArray[np.uint16]]
    dates: list[datetime]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]


def read_cube(path: Path) -> Cube:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the WorldCereal cube ships with the repository")
    with h5py.File(path, "r") as nc:
        # The file stores uint16 as int16 with _Unsigned=true (netCDF-3 convention).
        names = [f"S2-L2A-{b}" for b in CUBE_BANDS] + ["S1-SIGMA0-VV", "S1-SIGMA0-VH"]
        dn = {name.split("-")[-1]: np.asarray(nc[name][:]).view(np.uint16) for name in names}
        epoch = datetime(1990, 1, 1, tzinfo=UTC)
        dates = [epoch + timedelta(days=int(d)) for d in nc["t"][:]]
        return Cube(dn, dates, np.asarray(nc["x"][:]), np.asarray(nc["y"][:]))


def read_cropland(path: Path) -> npt.NDArray[np.bool_]:
    """WorldCereal's cropland map of the cube: True where cropland.

    In `worldcereal_cropland_classification.nc` the class value 0 is cropland and 1 is
    other: the WorldCereal GeoTIFF of the same patch, whose band is named
    `cropland_classification` (1 = cropland, with crop types only on those pixels),
    agrees with `class == 0` on 97.3 % of the pixels once aligned (it starts 2 rows
    higher), and with `class == 1` on 3 %; the `class == 0` pixels are also the ones
    with bare soil in winter, a June peak and a harvest drop (tests/unit/test_psetae.py).
    """
    with h5py.File(path, "r") as nc:
        classes = np.asarray(nc["__xarray_dataarray_variable__"][0]).view(np.uint16)
    cropland: npt.NDArray[np.bool_] = classes == 0
    return cropland


def convert_cube(
    inputs: Path,
    cropland: Path,
    out_dir: Path,
    block: int = 5,
    purity: float = 0.8,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Blocks of the cube as parcels labelled by WorldCereal's cropland map."""
    cube = read_cube(inputs)
    dn, dates = cube.dn, [d.date() for d in cube.dates]
    reference = read_cropland(cropland)
    rows, cols = reference.shape
    bands = [dn["B08" if b == "B8A" else b] for b in S2_BANDS]
    s2 = np.stack(bands, axis=1)  # (T, C, rows, cols)
    s2 = np.where((s2 == NODATA).any(axis=1, keepdims=True), 0, s2).astype(np.uint16)
    vv, vh = s1_db(dn["VV"]), s1_db(dn["VH"])
    labels, regions, geomfeat = {}, {}, {}
    perimeter, area = 4 * block * 10.0, block * block
    skipped = 0
    for r in range(0, rows - block + 1, block):
        for c in range(0, cols - block + 1, block):
            window = (slice(r, r + block), slice(c, c + block))
            share = float(reference[window].mean())  # cropland share of the block
            if max(share, 1 - share) < purity:
                skipped += 1
                continue
            pid = f"r{r:03d}c{c:03d}"
            pixels = s2[:, :, window[0], window[1]].reshape(len(dates), len(S2_BANDS), -1)
            stats = s1_statistics(
                vv[:, window[0], window[1]].reshape(len(dates), -1),
                vh[:, window[0], window[1]].reshape(len(dates), -1),
            )
            write_parcel(out_dir, pid, pixels, stats)
            labels[pid] = "cropland" if share >= 0.5 else "non_cropland"
            regions[pid] = ("N" if r < rows // 2 else "S") + ("W" if c < cols // 2 else "E")
            geomfeat[pid] = [perimeter, area, 1.0, perimeter / (area * 100.0)]
    write_meta(out_dir, "labels", {"cropland": labels})
    write_meta(out_dir, "dates", dates_json(dates))
    write_meta(out_dir, "dates_s1", dates_json(dates))
    write_meta(out_dir, "regions", regions)
    write_meta(out_dir, "geomfeat", geomfeat)
    counts = {
        name: sum(v == name for v in labels.values()) for name in sorted(set(labels.values()))
    }
    described = {
        "name": "worldcereal-cube-31UFS-2021",
        "source": f"{inputs.name} with WorldCereal's cropland map {cropland.name} as labels",
        "licence": LICENCE,
        "channels": list(S2_BANDS),
        "value_scale": 10000,
        "s1_features": list(S1_FEATURES),
        "geomfeat": list(GEOMFEAT),
        "parcels": len(labels),
        "pixels_per_parcel": area,
        "blocks_skipped_as_mixed": skipped,
        "purity": purity,
        "labels": counts,
        "dates": [d.isoformat() for d in dates],
        "notes": "labels are WorldCereal's classifier output, not field truth; B8A = B08",
    }
    write_meta(out_dir, "dataset", described)
    log(f"wrote {len(labels)} blocks of {block}×{block} px ({skipped} mixed skipped) to {out_dir}")
    return described
