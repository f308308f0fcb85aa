"""Domain-shift monitoring: live inputs and predictions against the model's training.

The seeds' main worry is a model used where or when it was not trained (a new region, a
new year). Every model card (`data/models/<name>/<version>/card.json`) stores the
statistics of its training inputs; the inference service compares each batch with them
and exports what it finds as Prometheus metrics, which infra/prometheus alerts on:

- **input shift**: per input feature, (batch mean − training mean) / training std, in
  training standard deviations ("sigma"). A pass is compared with the same period of
  the training season when the card has per-period statistics (phenology alone moves a
  month's mean by up to ~0.9 sigma of the whole season's), otherwise with the whole;
- **prediction entropy** (normalised to 0..1) and **confidence** (top probability);
- **class shift**: population stability index (PSI) between the classes predicted in
  a batch and the training class prior.

Labels are bounded: model names, the AOIs of the subscription file, feature names of
the card and class names of the model's legend; never a scene or parcel id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from revisit_common.cards import CONSTANT_STD

RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class Reference:
    """Training mean and std of named features."""

    features: list[str]
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]

    @classmethod
    def of(cls, features: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> Reference:
        if not (len(features) == len(mean) == len(std)):
            raise ValueError(f"{len(features)} features, {len(mean)} means, {len(std)} stds")
        return cls(list(features), np.asarray(mean, np.float64), np.asarray(std, np.float64))


def feature_reference(statistics: Mapping[str, Any]) -> Reference:
    """The reference of a card's {feature: {"mean": m, "std": s}} statistics (entries
    that are not features, such as a "source" note, are skipped)."""
    names = [k for k, v in statistics.items() if isinstance(v, Mapping) and "mean" in v]
    return Reference.of(
        names, [statistics[k]["mean"] for k in names], [statistics[k]["std"] for k in names]
    )


def s2_reference(statistics: Mapping[str, Any], day_of_season: float | None) -> Reference:
    """The Sentinel-2 reference of a PSE-TAE card for a pass `day_of_season` days into
    the season: its period's statistics when the card has them, the season's otherwise."""
    seasonal = statistics.get("s2_by_period")
    if seasonal is not None and day_of_season is not None:
        period = seasonal["periods"].get(str(int(day_of_season // seasonal["period_days"])))
        if period is not None:
            return Reference.of(seasonal["channels"], period["mean"], period["std"])
    s2 = statistics["s2"]
    return Reference.of(s2["channels"], s2["mean"], s2["std"])


def shift_sigma(
    values: npt.NDArray[np.floating[Any]], reference: Reference
) -> npt.NDArray[np.float64]:
    """(batch mean − training mean) / training std per feature; values are (N, F). A
    feature constant in training (std 0) has no scale to shift by, and the models hold
    it at its training value (`revisit_common.cards.CONSTANT_STD`): it gives 0."""
    v = np.asarray(values, np.float64)
    if v.ndim != 2 or v.shape[1] != len(reference.features):
        raise ValueError(f"values {v.shape} do not match {len(reference.features)} features")
    if not len(v):
        return np.zeros(len(reference.features))
    varies = reference.std > CONSTANT_STD
    shift: npt.NDArray[np.float64] = np.where(
        varies, (v.mean(0) - reference.mean) / np.where(varies, reference.std, 1.0), 0.0
    )
    return shift


def normalised_entropy(probabilities: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Entropy of each row of (N, K) probabilities divided by log K: 0 certain, 1 uniform."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
    k = p.shape[1]
    entropy: npt.NDArray[np.float64] = (
        -(p * np.log(p)).sum(1) / math.log(k) if k > 1 else np.zeros(len(p))
    )
    return entropy


def class_psi(
    predicted: npt.NDArray[np.integer[Any]], prior: Mapping[str, float], classes: Sequence[str]
) -> float:
    """Population stability index of the predicted class shares against the prior.

    Rule of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25 a different population.
    """
    counts = np.bincount(np.asarray(predicted, np.int64), minlength=len(classes)).astype(np.float64)
    actual = np.maximum(counts / max(counts.sum(), 1.0), PSI_EPSILON)
    expected = np.maximum(np.array([prior.get(c, 0.0) for c in classes], np.float64), PSI_EPSILON)
    return float(((actual - expected) * np.log(actual / expected)).sum())


class DriftMetrics:
    """The drift metrics of the inference service (`revisit_inference_*`)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.shift = Gauge(
            "revisit_inference_input_shift_sigma",
            "Last batch's mean of an input feature, in training standard deviations from "
            "the training mean (same period of the season when the model card has it).",
            ["model", "aoi", "feature"],
            registry=registry,
        )
        self.max_shift = Gauge(
            "revisit_inference_input_shift_max_sigma",
            "Largest absolute input shift over the features of the last batch.",
            ["model", "aoi"],
            registry=registry,
        )
        self.entropy = Histogram(
            "revisit_inference_prediction_entropy_ratio",
            "Entropy of each prediction divided by log(classes): 0 certain, 1 uniform.",
            ["model", "aoi"],
            buckets=RATIO_BUCKETS,
            registry=registry,
        )
        self.confidence = Histogram(
            "revisit_inference_prediction_confidence_ratio",
            "Probability of the predicted class.",
            ["model", "aoi"],
            buckets=RATIO_BUCKETS,
            registry=registry,
        )
        self.psi = Gauge(
            "revisit_inference_class_psi_ratio",
            "Population stability index of the last batch's predicted classes against the "
            "training class prior.",
            ["model", "aoi"],
            registry=registry,
        )
        self.predicted = Counter(
            "revisit_inference_predicted_classes",
            "Predictions by model and class.",
            ["model", "class"],
            registry=registry,
        )

    def observe_inputs(
        self, model: str, aoi: str, values: npt.NDArray[np.floating[Any]], reference: Reference
    ) -> npt.NDArray[np.float64]:
        """Record the shift of a batch's inputs (N, F); returns it per feature."""
        shift = shift_sigma(values, reference)
        for name, value in zip(reference.features, shift, strict=True):
            self.shift.labels(model, aoi, name).set(float(value))
        self.max_shift.labels(model, aoi).set(float(np.abs(shift).max()) if len(shift) else 0.0)
        return shift

    def observe_predictions(
        self,
        model: str,
        aoi: str,
        probabilities: npt.NDArray[np.floating[Any]],
        classes: Sequence[str],
        prior: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Record entropy, confidence, classes and (with a prior) the class PSI."""
        p = np.asarray(probabilities, np.float64)
        if not len(p):
            return {}
        entropy, confidence = normalised_entropy(p), p.max(1)
        predicted = p.argmax(1)
        entropy_of, confidence_of = (
            self.entropy.labels(model, aoi),
            self.confidence.labels(model, aoi),
        )
        for e, c in zip(entropy, confidence, strict=True):  # a pixel each, for land cover
            entropy_of.observe(float(e))
            confidence_of.observe(float(c))
        for k, n in zip(*np.unique(predicted, return_counts=True), strict=True):
            self.predicted.labels(model, classes[int(k)]).inc(int(n))
        out = {"entropy": float(entropy.mean()), "confidence": float(confidence.mean())}
        if prior:
            out["psi"] = class_psi(predicted, prior, classes)
            self.psi.labels(model, aoi).set(out["psi"])
        return out
