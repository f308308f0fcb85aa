"""Sentinel-1 backscatter per parcel: σ⁰ (or γ⁰) VV and VH in dB, kept apart from the
optical pixel sets so that a fusion model can use both.

Values are turned into linear power first (whatever their encoding), averaged over the
parcel's valid pixels in the linear domain (the physical mean), then given in dB; the
spread is the standard deviation of the pixels' dB values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_preprocess.pixelsets import (
    DEFAULT_PIXEL_SETS,
    Parcel,
    ParcelBlock,
    ParcelReader,
    ParcelValues,
    PixelSetConfig,
    collect,
)

#: Encodings of `BandAsset.quantity` that can be turned into backscatter power.
LINEAR = ("sigma0_linear", "gamma0_linear")
DB_UINT16 = "db_uint16"  # WorldCereal / openEO: dn = 10 ** ((dB + 83) / 20), 1..65534
UNCALIBRATED = "amplitude_dn"
POLARIZATIONS = ("VV", "VH")


class UncalibratedError(ValueError):
    """Digital numbers of a GRD product: σ⁰ needs the product's calibration tables."""


def to_db(values: npt.NDArray[np.floating[Any]], band: pb.BandAsset) -> npt.NDArray[np.float64]:
    """Backscatter in dB from the stored values of one band."""
    scaled = values.astype(np.float64) * band.scale + band.offset
    if band.quantity in LINEAR:
        db: npt.NDArray[np.float64] = 10.0 * np.log10(scaled)
        return db
    if band.quantity == DB_UINT16:
        decoded: npt.NDArray[np.float64] = 20.0 * np.log10(scaled) - 83.0
        return decoded
    if band.quantity == UNCALIBRATED:
        raise UncalibratedError(
            f"band {band.band} holds uncalibrated GRD digital numbers: σ⁰ needs the "
            "calibration tables of the SAFE product; subscribe to an RTC/σ⁰ collection"
        )
    raise PoisonError(f"band {band.band}: unknown Sentinel-1 quantity {band.quantity!r}")


def channels(bands: Sequence[pb.BandAsset]) -> list[str]:
    names = [b.band for b in bands]
    out = [f"{p}_db_mean" for p in names] + [f"{p}_db_std" for p in names]
    if names == list(POLARIZATIONS):
        out.append("VH_VV_db")
    return out


def select_polarizations(scene: pb.SceneDiscovered) -> list[pb.BandAsset]:
    """VV then VH (those the scene has); HH/HV scenes (polar modes) give none."""
    by_name = {b.band: b for b in scene.bands}
    return [by_name[p] for p in POLARIZATIONS if p in by_name]


def extract_backscatter(
    bands: Sequence[pb.BandAsset],
    parcels: Sequence[Parcel],
    config: PixelSetConfig = DEFAULT_PIXEL_SETS,
    parcels_crs: str | None = "EPSG:4326",
) -> ParcelValues:
    """Per-parcel backscatter statistics of one Sentinel-1 scene, named by `channels`."""
    for band in bands:  # fail before reading anything
        to_db(np.ones(1), band)
    names = channels(bands)

    def statistics(
        block: ParcelBlock, observed: npt.NDArray[np.int64], ids: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        db = np.stack([to_db(block.raw[b, block.valid], band) for b, band in enumerate(bands)])
        starts, n = block.starts[observed], block.counts[observed]
        # each observed parcel's valid pixels are contiguous from its start
        mean_db = 10.0 * np.log10(np.add.reduceat(10.0 ** (db / 10.0), starts, axis=1) / n)
        mean_of_db = np.add.reduceat(db, starts, axis=1) / n
        var = np.add.reduceat(db**2, starts, axis=1) / n - mean_of_db**2
        stats = [mean_db, np.sqrt(np.clip(var, 0, None))]
        if len(names) > 2 * len(bands):
            stats.append(mean_db[1:2] - mean_db[0:1])
        table: npt.NDArray[np.float32] = np.concatenate(stats).T.astype(np.float32)
        return table

    with ParcelReader(bands, require_positive=True) as reader:
        return collect(
            reader,
            parcels,
            parcels_crs,
            config.block_px,
            statistics,
            names,
            np.zeros((0, len(names)), np.float32),
        )
