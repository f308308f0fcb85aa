"""Indicators of a "region" AOI, per pass.

- Biophysics: LAI, CCC and FCOVER of every valid pixel from the PROSAIL-trained model,
  summarised for the area (mean and median of each, and the AOI's valid share).
- Land cover: each pixel's class from its NDVI series over the year up to this pass
  (the region's season series in the payload store), summarised as the area's tree,
  built-up and cropland fractions (`revisit_common.indicators`; expected fractions,
  i.e. mean probabilities) over the pixels seen at least once.

The model needs the sun and view angles of the pass (`RegionPixels.view`, from the STAC
item's `view:*` properties): without them there is no honest estimate, and the batch
says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.indicators import area_fractions
from revisit_common.payload import PayloadStore
from revisit_common.series import read_series
from revisit_inference.drift import feature_reference
from revisit_inference.served import Predicted, ServedModel

VARIABLES = ("lai", "ccc", "fcover")


def relative_azimuth(view: pb.ViewGeometry) -> float:
    """|sun − view azimuth| folded into 0..180°."""
    delta = abs(view.sun_azimuth - view.view_azimuth) % 360.0
    return 360.0 - delta if delta > 180.0 else delta


def region_pixels(batch: pb.ObservationBatch, store: PayloadStore) -> npt.NDArray[np.float32]:
    """Reflectance (N, C) of the valid pixels of a region batch."""
    reflectance = store.get_array(batch.region.reflectance)
    valid = store.get_array(batch.region.valid).astype(bool)
    if reflectance.ndim != 3 or reflectance.shape[1:] != valid.shape:
        raise PoisonError(
            f"region arrays disagree: reflectance {reflectance.shape}, valid {valid.shape}"
        )
    pixels: npt.NDArray[np.float32] = reflectance[:, valid].T.astype(np.float32)
    return pixels


def biophysical_variables(
    bio: ServedModel, pixels: npt.NDArray[np.float32], view: pb.ViewGeometry
) -> tuple[npt.NDArray[np.float32], str]:
    """LAI, CCC and FCOVER (N, 3) of reflectance pixels (N, C) seen under `view`, and the
    model version that answered."""
    angles = np.tile(
        np.array([[view.sun_zenith, view.view_zenith, relative_azimuth(view)]], np.float32),
        (len(pixels), 1),
    )
    values, version = bio.model.infer({"reflectance": pixels, "angles": angles}, "variables")
    if values.shape != (len(pixels), len(VARIABLES)):
        raise PoisonError(f"{bio.name} answered {values.shape} for {len(pixels)} px")
    return values, version


def predict_biophysics(
    batch: pb.ObservationBatch, store: PayloadStore, bio: ServedModel, out: pb.PredictionBatch
) -> Predicted | None:
    """Fill `out` with the area's summary (None when there is nothing to estimate)."""
    if not batch.region.HasField("view") or batch.region.view.sun_zenith <= 0:
        out.notes.append("no sun/view angles for this pass: biophysical variables need them")
        out.no_valid_observation = True
        return None
    pixels = region_pixels(batch, store)
    if not len(pixels):
        out.no_valid_observation = True
        return None
    values, out.model_version = biophysical_variables(bio, pixels, batch.region.view)
    out.value_names.extend(
        [f"{v}_mean" for v in VARIABLES] + [f"{v}_median" for v in VARIABLES] + ["valid_fraction"]
    )
    summary = [*values.mean(0), *np.median(values, axis=0), batch.region.valid_fraction]
    out.predictions.append(
        pb.Prediction(
            entity_id=batch.aoi.name,  # the AOI's geometry is in the aoi table
            values=[float(v) for v in summary],
            observations=len(pixels),
        )
    )
    return Predicted(values, pixels, feature_reference(bio.statistics["reflectance"]))


#: The land-cover model was trained on windows of 300 to 400 days of passes.
WINDOW_DAYS = 365


@dataclass(frozen=True)
class PixelSeries:
    inputs: dict[str, npt.NDArray[np.float32]]  # ndvi, valid, positions: (N, T)
    latest: npt.NDArray[np.float32]  # (M, 1): NDVI of this pass's valid pixels
    pixels: int  # of the AOI's grid
    passes: int
    span_days: int
    skipped: int  # passes on another grid (the AOI's window changed)


def ndvi_series(batch: pb.ObservationBatch, store: PayloadStore) -> PixelSeries:
    """NDVI series of the AOI's pixels over the year up to this pass (pixels with at
    least one valid date), from the region's series in the payload store."""
    region = batch.region
    if "NDVI" not in region.index_names:
        raise PoisonError(f"region indices {list(region.index_names)} have no NDVI")
    k = list(region.index_names).index("NDVI")
    shape = tuple(region.valid.shape)
    until = batch.header.acquired_at.ToDatetime().date()
    used, skipped = [], 0
    for p in read_series(store, region.series_key):
        acquired = date.fromisoformat(p["acquired_at"][:10])
        if not 0 <= (until - acquired).days < WINDOW_DAYS:
            continue
        if tuple(p["arrays"]["valid"].shape) != shape:
            skipped += 1
            continue
        valid = store.get_array(p["arrays"]["valid"]).astype(bool)
        ndvi = store.get_array(p["arrays"]["indices"])[k]
        used.append((acquired, valid & np.isfinite(ndvi), np.nan_to_num(ndvi)))
    if not used:
        raise PoisonError(f"region series {region.series_key!r} lacks this pass")
    valid = np.stack([v.reshape(-1) for _, v, _ in used], axis=1)  # (pixels, T)
    ndvi = np.stack([n.reshape(-1) for _, _, n in used], axis=1)
    seen = valid.any(axis=1)
    first = used[0][0]
    days = np.array([(a - first).days for a, _, _ in used], np.float32)
    inputs = {
        "ndvi": np.where(valid[seen], ndvi[seen], 0.0).astype(np.float32),
        "valid": valid[seen].astype(np.float32),
        "positions": np.tile(days, (int(seen.sum()), 1)),
    }
    latest = ndvi[valid[:, -1], -1].reshape(-1, 1).astype(np.float32)
    return PixelSeries(inputs, latest, valid.shape[0], len(used), int(days[-1]), skipped)


def predict_land_cover(
    batch: pb.ObservationBatch, store: PayloadStore, lc: ServedModel, out: pb.PredictionBatch
) -> Predicted:
    """Fill `out` with the AOI's indicator fractions."""
    series = ndvi_series(batch, store)
    probabilities, out.model_version = lc.model.infer(series.inputs, "probabilities")
    if probabilities.shape != (len(series.inputs["ndvi"]), len(lc.classes)):
        raise PoisonError(f"{lc.name} answered {probabilities.shape}")
    fractions = area_fractions(probabilities, lc.classes)
    out.classes.extend(lc.classes)
    out.season = batch.region.season
    out.value_names.extend([*fractions, "pixels_share"])
    if series.skipped:
        out.notes.append(f"{series.skipped} passes on another grid of the AOI were left out")
    out.predictions.append(
        pb.Prediction(
            entity_id=batch.aoi.name,
            class_code=int(probabilities.mean(0).argmax()),
            values=[*fractions.values(), len(probabilities) / series.pixels],
            observations=series.passes,
            season_days=series.span_days,
        )
    )
    return Predicted(probabilities, series.latest, feature_reference(lc.statistics))
