"""Biophysical variables of a "region" AOI, per pass: LAI, CCC and FCOVER of every valid
pixel from the PROSAIL-trained model, summarised for the area (mean and median of each,
and the share of the AOI's pixels that were valid).

The model needs the sun and view angles of the pass (`RegionPixels.view`, from the STAC
item's `view:*` properties): without them there is no honest estimate, and the batch
says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.payload import PayloadStore
from revisit_inference.drift import Reference
from revisit_inference.parcels import NamedModel

VARIABLES = ("lai", "ccc", "fcover")


@dataclass(frozen=True)
class BiophysModel:
    model: NamedModel
    statistics: dict[str, Any]

    def reference(self) -> Reference:
        """The training reflectances' statistics per band (for drift monitoring)."""
        bands = self.statistics["reflectance"]
        names = [b for b in bands if b != "source"]
        return Reference.of(
            names, [bands[b]["mean"] for b in names], [bands[b]["std"] for b in names]
        )


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


def predict_biophysics(
    batch: pb.ObservationBatch, store: PayloadStore, bio: BiophysModel, out: pb.PredictionBatch
) -> npt.NDArray[np.float32] | None:
    """Fill `out` with the area's summary; the per-pixel values (None when impossible)."""
    if not batch.region.HasField("view") or batch.region.view.sun_zenith <= 0:
        out.notes.append("no sun/view angles for this pass: biophysical variables need them")
        out.no_valid_observation = True
        return None
    pixels = region_pixels(batch, store)
    if not len(pixels):
        out.no_valid_observation = True
        return None
    view = batch.region.view
    angles = np.tile(
        np.array([[view.sun_zenith, view.view_zenith, relative_azimuth(view)]], np.float32),
        (len(pixels), 1),
    )
    values, out.model_version = bio.model.infer(
        {"reflectance": pixels, "angles": angles}, "variables"
    )
    if values.shape != (len(pixels), len(VARIABLES)):
        raise PoisonError(f"{bio.model.model_name} answered {values.shape} for {len(pixels)} px")
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
    return values
