"""Indicators of a "region" AOI, per pass.

- Biophysics: LAI, CCC and FCOVER of every valid pixel from the PROSAIL-trained model,
  summarised for the area (mean and median of each, and the AOI's valid share).
- Land cover: each pixel's class from its NDVI series over the year up to this pass
  (the region's season series in the payload store), summarised as the area's tree,
  built-up and cropland fractions (`revisit_common.indicators`; expected fractions,
  i.e. mean probabilities) over the pixels seen at least once.

Each is summarised for the whole AOI (entity id: the AOI's name) and, where the AOI has
area units (`RegionPixels.units`), for each unit with pixels to summarise (entity id:
the unit's key), with the shares counted over the unit's pixels.

The model needs the sun and view angles of the pass (`RegionPixels.view`, from the STAC
item's `view:*` properties): without them there is no honest estimate, and the batch
says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Generator
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
from revisit_inference.served import Answer, Infer, Predicted, Prediction, ServedModel

VARIABLES = ("lai", "ccc", "fcover")
#: The values of a biophysical summary, in order: the mean, then the median of each.
SUMMARY = (*(f"{v}_mean" for v in VARIABLES), *(f"{v}_median" for v in VARIABLES))


def relative_azimuth(view: pb.ViewGeometry) -> float:
    """|sun − view azimuth| folded into 0..180°."""
    delta = abs(view.sun_azimuth - view.view_azimuth) % 360.0
    return 360.0 - delta if delta > 180.0 else delta


def region_pixels(
    batch: pb.ObservationBatch, store: PayloadStore
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Reflectance (N, C) of the valid pixels of a region batch, and its valid mask."""
    reflectance = store.get_array(batch.region.reflectance)
    valid = store.get_array(batch.region.valid).astype(bool)
    if reflectance.ndim != 3 or reflectance.shape[1:] != valid.shape:
        raise PoisonError(
            f"region arrays disagree: reflectance {reflectance.shape}, valid {valid.shape}"
        )
    pixels: npt.NDArray[np.float32] = reflectance[:, valid].T.astype(np.float32)
    return pixels, valid


@dataclass(frozen=True)
class Units:
    """The AOI's area units on its grid: `labels` (H * W,) 0 outside every unit, i for
    keys[i - 1]."""

    labels: npt.NDArray[np.uint16]
    keys: list[str]

    @staticmethod
    def of(batch: pb.ObservationBatch, store: PayloadStore) -> Units:
        region = batch.region
        if not region.HasField("units"):
            return Units(np.zeros(0, np.uint16), [])
        labels = store.get_array(region.units)
        if tuple(labels.shape) != tuple(region.valid.shape):
            raise PoisonError(
                f"region arrays disagree: units {labels.shape}, valid {region.valid.shape}"
            )
        if labels.size and int(labels.max()) > len(region.unit_keys):
            raise PoisonError(f"unit label {int(labels.max())} for {len(region.unit_keys)} keys")
        return Units(labels.reshape(-1).astype(np.uint16, copy=False), list(region.unit_keys))

    def groups(self, taken: npt.NDArray[np.bool_]) -> list[tuple[str, npt.NDArray[np.bool_], int]]:
        """Per unit with taken pixels: its key, which of the taken pixels (in order) are
        its own, and how many pixels of the grid it has."""
        if not self.keys:
            return []
        size = np.bincount(self.labels, minlength=len(self.keys) + 1)
        labels = self.labels[taken.reshape(-1)]
        has = np.bincount(labels, minlength=len(self.keys) + 1)
        return [
            (key, labels == i, int(size[i])) for i, key in enumerate(self.keys, start=1) if has[i]
        ]


def has_angles(observed: pb.RegionPixels | pb.ParcelObservation, out: pb.PredictionBatch) -> bool:
    """Whether the pass has its sun and view angles; without them `out` says why there is
    no estimate (no honest one without them)."""
    if observed.HasField("view") and observed.view.sun_zenith > 0:
        return True
    out.notes.append("no sun/view angles for this pass: biophysical variables need them")
    out.no_valid_observation = True
    return False


def summarise(values: npt.NDArray[np.float32]) -> list[float]:
    """SUMMARY of variables (N, 3)."""
    return [float(v) for v in (*values.mean(0), *np.median(values, axis=0))]


def biophysical_variables(
    bio: ServedModel, pixels: npt.NDArray[np.float32], view: pb.ViewGeometry
) -> Generator[Infer, Answer, Answer]:
    """LAI, CCC and FCOVER (N, 3) of reflectance pixels (N, C) seen under `view`, and the
    model version that answered."""
    angles = np.tile(
        np.array([[view.sun_zenith, view.view_zenith, relative_azimuth(view)]], np.float32),
        (len(pixels), 1),
    )
    values, version = yield Infer(bio, {"reflectance": pixels, "angles": angles}, "variables")
    if values.shape != (len(pixels), len(VARIABLES)):
        raise PoisonError(f"{bio.name} answered {values.shape} for {len(pixels)} px")
    return values, version


def predict_biophysics(
    batch: pb.ObservationBatch, store: PayloadStore, bio: ServedModel, out: pb.PredictionBatch
) -> Prediction:
    """Fill `out` with the summaries of the AOI and of its units (None when there is
    nothing to estimate)."""
    if not has_angles(batch.region, out):
        return None
    pixels, valid = region_pixels(batch, store)
    if not len(pixels):
        out.no_valid_observation = True
        return None
    values, out.model_version = yield from biophysical_variables(bio, pixels, batch.region.view)
    out.value_names.extend([*SUMMARY, "valid_fraction"])

    def summary(entity: str, rows: npt.NDArray[np.float32], share: float) -> pb.Prediction:
        return pb.Prediction(
            entity_id=entity, values=[*summarise(rows), float(share)], observations=len(rows)
        )

    # the AOI's geometry is in the aoi table, its units' in area_unit
    out.predictions.append(summary(batch.aoi.name, values, batch.region.valid_fraction))
    for key, own, size in Units.of(batch, store).groups(valid):
        out.predictions.append(summary(key, values[own], own.sum() / size))
    return Predicted(values, pixels, feature_reference(bio.statistics["reflectance"]))


#: The land-cover model was trained on windows of 300 to 400 days of passes.
WINDOW_DAYS = 365


@dataclass(frozen=True)
class PixelSeries:
    inputs: dict[str, npt.NDArray[np.float32]]  # ndvi, valid, positions: (N, T)
    latest: npt.NDArray[np.float32]  # (M, 1): NDVI of this pass's valid pixels
    seen: npt.NDArray[np.bool_]  # (H * W,): the grid's pixels in `inputs`
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
    return PixelSeries(inputs, latest, seen, valid.shape[0], len(used), int(days[-1]), skipped)


def predict_land_cover(
    batch: pb.ObservationBatch, store: PayloadStore, lc: ServedModel, out: pb.PredictionBatch
) -> Prediction:
    """Fill `out` with the indicator fractions of the AOI and of its units."""
    series = ndvi_series(batch, store)
    probabilities, out.model_version = yield Infer(lc, series.inputs, "probabilities")
    if probabilities.shape != (len(series.inputs["ndvi"]), len(lc.classes)):
        raise PoisonError(f"{lc.name} answered {probabilities.shape}")
    out.classes.extend(lc.classes)
    out.season = batch.region.season
    out.value_names.extend([*area_fractions(probabilities, lc.classes), "pixels_share"])
    if series.skipped:
        out.notes.append(f"{series.skipped} passes on another grid of the AOI were left out")

    def summary(entity: str, rows: npt.NDArray[np.float32], pixels: int) -> pb.Prediction:
        fractions = area_fractions(rows, lc.classes)
        return pb.Prediction(
            entity_id=entity,
            class_code=int(rows.mean(0).argmax()),
            values=[*fractions.values(), len(rows) / pixels],
            observations=series.passes,
            season_days=series.span_days,
        )

    out.predictions.append(summary(batch.aoi.name, probabilities, series.pixels))
    for key, own, size in Units.of(batch, store).groups(series.seen):
        out.predictions.append(summary(key, probabilities[own], size))
    return Predicted(probabilities, series.latest, feature_reference(lc.statistics))
