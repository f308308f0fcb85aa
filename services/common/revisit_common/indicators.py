"""Land-cover area indicators from per-pixel classes: tree, built-up, water and cropland
fractions of an area. Plain numpy: the inference service uses it without torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

#: Indicators of the inference service -> the LULC class names that make them up. Water
#: is not in `LEGEND` (the patch has none): `area_fractions` leaves out an indicator
#: whose classes are all missing from the legend rather than report a false 0.
INDICATOR_CLASSES: dict[str, tuple[str, ...]] = {
    "tree": ("forest",),
    "built_up": ("artificial surface",),
    "water": ("water",),
    "cropland": ("cultivated land",),
}


def area_fractions(
    predictions: npt.ArrayLike,
    legend: Sequence[str],
    indicators: Mapping[str, Sequence[str]] = INDICATOR_CLASSES,
) -> dict[str, float]:
    """The fraction of an area's pixels in each indicator.

    ``predictions`` are either class probabilities (..., K) (floats, K = len(legend)):
    the expected fraction, the mean over pixels of the indicator's summed probability;
    or class ids (...) (integers, indices into ``legend``): the share of pixels whose
    class is one of the indicator's. Pass only the pixels of the area (mask first).
    Indicators none of whose classes is in ``legend`` are left out (the model cannot see
    them), so with the eo-learn legend (no water) there is no "water" key.
    """
    values = np.asarray(predictions)
    names = list(legend)
    columns = {
        indicator: [names.index(c) for c in classes if c in names]
        for indicator, classes in indicators.items()
    }
    columns = {indicator: idx for indicator, idx in columns.items() if idx}
    if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        ids = values.reshape(-1).astype(np.int64)
        if ids.size == 0:
            raise ValueError("no pixel to aggregate")
        if ids.min() < 0 or ids.max() >= len(names):
            raise ValueError(f"class ids outside 0..{len(names) - 1}")
        return {indicator: float(np.isin(ids, idx).mean()) for indicator, idx in columns.items()}
    if values.ndim == 0 or values.shape[-1] != len(names):
        raise ValueError(f"probabilities {values.shape}: the last axis must be {len(names)}")
    probabilities = values.reshape(-1, len(names)).astype(np.float64)
    if len(probabilities) == 0:
        raise ValueError("no pixel to aggregate")
    return {
        indicator: float(probabilities[:, idx].sum(axis=1).mean())
        for indicator, idx in columns.items()
    }
