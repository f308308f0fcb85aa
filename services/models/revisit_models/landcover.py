"""Per-pixel land cover from a season of Sentinel-2 NDVI: a temporal attention classifier
trained on the real eo-learn patch (Slovenia, 101 × 100 px at 10 m, 68 dates).

The labels are eo-learn's LULC raster (`mask_timeless/LULC.npy`, rasterised from the
RABA land-use register), coded by eo-learn's LULC enum: 0 no data, 1 cultivated land,
2 forest, 3 grassland, 4 shrubland, 5 water, 6 wetlands, 7 tundra, 8 artificial
surface, 9 bareland, 10 snow and ice. The patch holds five of them (plus no data), and
the model's legend is those five: it cannot predict water or any other absent class.

The model takes one pixel's series of dates, padded to the longest of its batch:

- ``ndvi`` (N, T): NDVI of each date; ignored (set to 0) where ``valid`` is 0;
- ``valid`` (N, T): 1 for a cloud-free observation, 0 for a cloudy, missing or padded date;
- ``positions`` (N, T): days since the first date of the window (the first pass of the
  season or year fed), ignored where ``valid`` is 0;

and returns class probabilities (N, K) in `LEGEND` order; a pixel without any valid date
gets the uniform distribution. Padding dates with ``valid`` 0 (whatever their NDVI and
position, zeros in Triton's backend) never changes the output.

`revisit_common.indicators.area_fractions` turns the per-pixel predictions of an area
into the indicator fractions (tree, built-up, water, cropland) that the inference
service reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from revisit_common.cards import ModelCard, TensorSpec
from revisit_models.artefact import save_model, training_environment
from revisit_models.metrics import classification_report, summary
from revisit_models.temporal import TemporalAttentionEncoder, masked_mean
from revisit_models.training import Batch, fit, minibatches, predict, seed_everything

#: eo-learn's LULC enum (`examples/land-cover-map`): raster code -> class name.
LULC_CODES: dict[int, str] = {
    0: "no data",
    1: "cultivated land",
    2: "forest",
    3: "grassland",
    4: "shrubland",
    5: "water",
    6: "wetlands",
    7: "tundra",
    8: "artificial surface",
    9: "bareland",
    10: "snow and ice",
}
NO_DATA = 0
#: The codes present in the patch's labels (no data excluded), in legend order.
LEGEND_CODES: tuple[int, ...] = (1, 2, 3, 4, 8)
#: The model's classes: output k of the model is the probability of LEGEND[k].
LEGEND: tuple[str, ...] = tuple(LULC_CODES[c] for c in LEGEND_CODES)

MODEL_NAME = "landcover_tae"
MODEL_VERSION = "1"
#: Pixel series in one Triton request (about 0.5 MB for a year of passes): an area's
#: pixels go in a few large requests rather than many that the per-request cost dominates.
MAX_BATCH = 4096
REPRODUCE = "revisit train landcover --data data/eo-learn --out data/models/landcover_tae/1"
DEFAULT_EPOCHS = 40


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LandCoverPatch:
    ndvi: npt.NDArray[np.float32]  # (T, rows, cols)
    cloud: npt.NDArray[np.bool_]  # (T, rows, cols), True = cloud
    dates: npt.NDArray[np.datetime64]  # (T,) datetime64[D], non-decreasing
    days: npt.NDArray[np.float32]  # (T,) days since the first date
    labels: npt.NDArray[np.int64]  # (rows, cols) index into LEGEND, -1 = no data
    codes: npt.NDArray[np.int64]  # (rows, cols) the raw LULC codes


def load_patch(data_dir: Path) -> LandCoverPatch:
    """The eo-learn patch in `data_dir`: NDVI.npy, CLM.npy, timestamps.json, LULC.npy."""
    missing = [
        name
        for name in ("NDVI.npy", "CLM.npy", "timestamps.json", "LULC.npy")
        if not (data_dir / name).exists()
    ]
    if missing:
        raise FileNotFoundError(f"{data_dir} lacks {', '.join(missing)}: is it data/eo-learn?")
    ndvi = np.load(data_dir / "NDVI.npy")[..., 0].astype(np.float32)
    cloud = np.load(data_dir / "CLM.npy")[..., 0].astype(bool)
    stamps = json.loads((data_dir / "timestamps.json").read_text())
    dates = np.array([s[:10] for s in stamps], dtype="datetime64[D]")
    codes = np.load(data_dir / "LULC.npy")[..., 0].astype(np.int64)
    if ndvi.shape != cloud.shape or ndvi.shape[0] != len(dates) or ndvi.shape[1:] != codes.shape:
        raise ValueError(
            f"NDVI {ndvi.shape}, CLM {cloud.shape}, {len(dates)} dates, LULC {codes.shape}"
        )
    if (np.diff(dates).astype(np.int64) < 0).any():  # two passes on one day happen
        raise ValueError("timestamps are not in date order")
    unknown = sorted(set(np.unique(codes).tolist()) - {NO_DATA, *LEGEND_CODES})
    if unknown:
        raise ValueError(f"LULC codes {unknown} are not in the legend {LEGEND_CODES}")
    lookup = np.full(max(LULC_CODES) + 1, -1, np.int64)
    lookup[list(LEGEND_CODES)] = np.arange(len(LEGEND_CODES))
    days = (dates - dates[0]).astype(np.int64).astype(np.float32)
    return LandCoverPatch(ndvi, cloud, dates, days, lookup[codes], codes)


@dataclass(frozen=True)
class SpatialSplit:
    """Pixel masks (rows, cols): training block, buffer columns, held-out block."""

    train: npt.NDArray[np.bool_]
    gap: npt.NDArray[np.bool_]
    holdout: npt.NDArray[np.bool_]
    train_columns: tuple[int, int]  # [first, end)
    holdout_columns: tuple[int, int]


def spatial_split(
    labels: npt.NDArray[np.int64], holdout_columns: int = 25, gap_columns: int = 2
) -> SpatialSplit:
    """Hold out the right-most `holdout_columns` columns, drop `gap_columns` columns
    between them and the training block; no-data pixels (label -1) are in neither."""
    cols = labels.shape[1]
    if holdout_columns < 1 or gap_columns < 0 or holdout_columns + gap_columns >= cols:
        raise ValueError(f"{holdout_columns} held out + {gap_columns} gap of {cols} columns")
    column = np.broadcast_to(np.arange(cols), labels.shape)
    labelled = labels >= 0
    train_end, holdout_start = cols - holdout_columns - gap_columns, cols - holdout_columns
    return SpatialSplit(
        train=labelled & (column < train_end),
        gap=labelled & (column >= train_end) & (column < holdout_start),
        holdout=labelled & (column >= holdout_start),
        train_columns=(0, train_end),
        holdout_columns=(holdout_start, cols),
    )


@dataclass(frozen=True)
class Window:
    """Model inputs of pixels over one window of dates (compact: only its dates)."""

    ndvi: torch.Tensor  # (N, T)
    valid: torch.Tensor  # (N, T)
    positions: torch.Tensor  # (N, T)

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.ndvi, self.valid, self.positions


def window_inputs(
    ndvi: npt.NDArray[np.float32],
    clear: npt.NDArray[np.bool_],
    days: npt.NDArray[np.float32],
    dates: slice,
) -> Window:
    """Pixels (P, T) over the dates `dates`; positions are days since its first date."""
    idx = np.arange(len(days))[dates]
    valid = clear[:, idx]
    return Window(
        torch.from_numpy(np.where(valid, ndvi[:, idx], 0.0).astype(np.float32)),
        torch.from_numpy(valid.astype(np.float32)),
        torch.from_numpy(np.broadcast_to(days[idx] - days[idx[0]], valid.shape) * valid)
        .float()
        .contiguous(),
    )


def year_slice(dates: npt.NDArray[np.datetime64], first: str, end: str) -> slice:
    """The dates in [first, end) as a slice (dates increasing)."""
    lo = int(np.searchsorted(dates, np.datetime64(first, "D")))
    hi = int(np.searchsorted(dates, np.datetime64(end, "D")))
    if hi <= lo:
        raise ValueError(f"no date in [{first}, {end})")
    return slice(lo, hi)


# -------------------------------------------------------------------------- model


class LandCoverTAE(nn.Module):
    """Per-pixel NDVI series -> land-cover class probabilities (see the module doc)."""

    def __init__(
        self,
        num_classes: int = len(LEGEND),
        embed_dim: int = 32,
        n_head: int = 4,
        d_k: int = 8,
        hidden: tuple[int, ...] = (64, 64),
        decoder: int = 32,
        dropout: float = 0.2,
        period: float = 1000.0,
        ndvi_mean: float = 0.0,
        ndvi_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ndvi_mean: torch.Tensor
        self.ndvi_std: torch.Tensor
        self.register_buffer("ndvi_mean", torch.tensor(float(ndvi_mean)))
        self.register_buffer("ndvi_std", torch.tensor(float(ndvi_std)))
        # Per date: its normalised NDVI and its departure from the pixel's mean NDVI.
        self.embed = nn.Sequential(
            nn.Linear(2, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.encoder = TemporalAttentionEncoder(
            in_dim=embed_dim, n_head=n_head, d_k=d_k, hidden=hidden, dropout=dropout, period=period
        )
        self.decoder = nn.Sequential(
            nn.Linear(self.encoder.out_dim, decoder),
            nn.BatchNorm1d(decoder),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(decoder, num_classes),
        )

    def logits(
        self, ndvi: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        mask = valid > 0.5
        zero = torch.zeros_like(ndvi)
        # torch.where, not a product: padding may hold any value, NaN included.
        x = torch.where(mask, (ndvi - self.ndvi_mean) / self.ndvi_std, zero)
        days = torch.where(mask, positions, zero)
        departure = torch.where(mask, x - masked_mean(x.unsqueeze(-1), mask, 1), zero)
        features = torch.stack([x, departure], dim=-1)
        logits: torch.Tensor = self.decoder(self.encoder(self.embed(features), days, mask.float()))
        return logits

    def forward(
        self, ndvi: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        probabilities = torch.softmax(self.logits(ndvi, valid, positions), dim=-1)
        observed = (valid > 0.5).any(dim=1, keepdim=True)
        uniform = torch.full_like(probabilities, 1.0 / self.num_classes)
        return torch.where(observed, probabilities, uniform)


class _Logits(nn.Module):
    """Training view of the model: logits, for a stable cross-entropy."""

    def __init__(self, model: LandCoverTAE) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, ndvi: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        return self.model.logits(ndvi, valid, positions)


# ----------------------------------------------------------------------- training


@dataclass(frozen=True)
class Augmentation:
    """Random windows of about a year of dates, random date dropout."""

    min_days: float = 300.0
    max_days: float = 400.0
    #: Share of windows cut short (a season under way): `short_days` to `min_days` days.
    short_share: float = 0.25
    short_days: float = 60.0
    max_dropout: float = 0.3  # per pixel, dropout rate drawn in [0, max_dropout]

    def lengths(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        full = rng.uniform(self.min_days, self.max_days, n)
        short = rng.uniform(self.short_days, self.min_days, n)
        return np.where(rng.uniform(0.0, 1.0, n) < self.short_share, short, full)

    def describe(self) -> str:
        return (
            f"one random window per pixel and epoch, anywhere in the series, of "
            f"{self.min_days:.0f}-{self.max_days:.0f} days ({100 * self.short_share:.0f} %: "
            f"{self.short_days:.0f}-{self.min_days:.0f} days, a season under way); "
            "positions: days since its first date; valid dates dropped at a rate drawn in "
            f"[0, {self.max_dropout}] per pixel"
        )


def training_batches(
    ndvi: npt.NDArray[np.float32],
    clear: npt.NDArray[np.bool_],
    days: npt.NDArray[np.float32],
    targets: npt.NDArray[np.int64],
    *,
    batch_size: int,
    augmentation: Augmentation,
) -> Callable[[np.random.Generator], Iterator[Batch]]:
    """`fit`'s batches: pixels (P, T) with their full series, cut into random windows."""
    total = float(days[-1] - days[0])
    y = torch.from_numpy(targets)

    def epoch(rng: np.random.Generator) -> Iterator[Batch]:
        for b in minibatches(len(targets), batch_size, rng):
            n = len(b)
            length = np.minimum(augmentation.lengths(rng, n), total)
            start = days[0] + rng.uniform(0.0, 1.0, n) * (total - length)
            lo = np.searchsorted(days, start, side="left")
            hi = np.maximum(np.searchsorted(days, start + length, side="right"), lo + 1)
            width = int((hi - lo).max())
            idx = lo[:, None] + np.arange(width)
            inside = idx < hi[:, None]
            idx = np.minimum(idx, len(days) - 1)
            rate = rng.uniform(0.0, augmentation.max_dropout, (n, 1))
            keep = rng.uniform(0.0, 1.0, (n, width)) >= rate
            seen = clear[b[:, None], idx] & inside
            valid = seen & keep
            # Dropout never empties a window that has a cloud-free date.
            valid = np.where(valid.any(1, keepdims=True), valid, seen)
            x = np.where(valid, ndvi[b[:, None], idx], 0.0).astype(np.float32)
            positions = np.where(valid, days[idx] - days[lo][:, None], 0.0).astype(np.float32)
            yield (
                (
                    torch.from_numpy(x),
                    torch.from_numpy(valid.astype(np.float32)),
                    torch.from_numpy(positions),
                ),
                y[torch.from_numpy(b)],
            )

    return epoch


def class_weights(
    targets: npt.NDArray[np.int64], num_classes: int, power: float = 0.5, cap: float = 10.0
) -> torch.Tensor:
    """(n_max / n_c) ** power, capped (a class with 1 pixel must not dominate); mean 1."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** power, 0.0)
    weights = np.minimum(weights, cap)
    weights = weights / weights[counts > 0].mean()
    return torch.tensor(weights, dtype=torch.float32)


def _pixels(
    patch: LandCoverPatch, mask: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """(P, T) NDVI, (P, T) cloud-free and (P,) labels of the pixels under `mask`."""
    return (
        np.ascontiguousarray(patch.ndvi[:, mask].T),
        np.ascontiguousarray(~patch.cloud[:, mask].T),
        patch.labels[mask],
    )


#: Evaluation windows: each full calendar year of the series, and a half season.
EVALUATION_WINDOWS: dict[str, tuple[str, str]] = {
    "holdout_2016": ("2016-01-01", "2017-01-01"),
    "holdout_2017": ("2017-01-01", "2018-01-01"),
    "holdout_2017_jan_jun": ("2017-01-01", "2017-07-01"),
}


#: Healthy forest of the patch has a summer (June-August) NDVI of about 0.75 (training
#: pixels: 10th percentile 0.63); below this a "forest" pixel has lost its canopy.
FOREST_SUMMER_NDVI = 0.6


def _class_counts(labels: npt.NDArray[np.int64]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(LEGEND))
    return {name: int(counts[i]) for i, name in enumerate(LEGEND)}


def disturbed_forest(
    ndvi: npt.NDArray[np.float32],
    clear: npt.NDArray[np.bool_],
    truth: npt.NDArray[np.int64],
    dates: npt.NDArray[np.datetime64],
    year: int,
) -> npt.NDArray[np.bool_]:
    """Pixels (P,) labelled forest whose median cloud-free NDVI of June-August `year` is
    below `FOREST_SUMMER_NDVI`: logged or damaged since the register was made."""
    summer = year_slice(dates, f"{year}-06-01", f"{year}-09-01")
    seen = clear[:, summer].any(1)
    median = np.full(len(truth), np.inf)
    observed = np.where(clear[seen, summer], ndvi[seen, summer], np.nan)
    median[seen] = np.nanmedian(observed, axis=1)
    out: npt.NDArray[np.bool_] = (truth == LEGEND.index("forest")) & (median < FOREST_SUMMER_NDVI)
    return out


def evaluate(
    model: nn.Module, patch: LandCoverPatch, mask: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    """Reports of `model` on the pixels under `mask` over each evaluation window, the
    majority-class baseline, the pixels' cloud-free date counts per window, and the
    calendar years' scores without the disturbed forest (`disturbed_forest`)."""
    ndvi, clear, truth = _pixels(patch, mask)
    out: dict[str, Any] = {}
    counts: dict[str, dict[str, float]] = {}
    predictions: dict[str, npt.NDArray[np.int64]] = {}
    for name, (first, end) in EVALUATION_WINDOWS.items():
        dates = year_slice(patch.dates, first, end)
        window = window_inputs(ndvi, clear, patch.days, dates)
        predicted = predict(model, window.inputs(), batch_size=1024).argmax(1).numpy()
        predictions[name] = predicted
        report = classification_report(truth, predicted, LEGEND)
        report["window"] = f"{first} .. {end} (exclusive), {dates.stop - dates.start} dates"
        out[name] = report
        per_pixel = clear[:, dates].sum(1)
        counts[name.removeprefix("holdout_")] = {
            "dates": dates.stop - dates.start,
            "min": int(per_pixel.min()),
            "median": float(np.median(per_pixel)),
            "mean": round(float(per_pixel.mean()), 1),
            "max": int(per_pixel.max()),
        }
    majority = int(np.bincount(truth, minlength=len(LEGEND)).argmax())
    baseline = classification_report(truth, np.full_like(truth, majority), LEGEND)
    out["majority_class_baseline"] = {"class": LEGEND[majority], **summary(baseline)}
    out["cloud_free_dates_per_pixel"] = counts
    diagnostic: dict[str, Any] = {
        "rule": (
            "held-out pixels labelled forest whose median cloud-free NDVI of June-August "
            f"is below {FOREST_SUMMER_NDVI} (healthy forest: about 0.75), i.e. logged or "
            "damaged since the land-use register was made; scores without them"
        )
    }
    for year in (2016, 2017):
        predicted = predictions[f"holdout_{year}"]
        low = disturbed_forest(ndvi, clear, truth, patch.dates, year)
        kept = classification_report(truth[~low], predicted[~low], LEGEND)
        diagnostic[str(year)] = {
            "pixels": int(low.sum()),
            "predicted_as": _class_counts(predicted[low]),
            "without_them": summary(kept),
        }
    out["diagnostic_disturbed_forest"] = diagnostic
    return out


@dataclass(frozen=True)
class Fitted:
    model: LandCoverTAE
    training: dict[str, Any]  # fit()'s record
    weights: torch.Tensor  # class weights of the loss
    mean: float  # NDVI statistics of the valid training observations
    std: float
    targets: npt.NDArray[np.int64]  # training labels


def fit_landcover(
    patch: LandCoverPatch,
    mask: npt.NDArray[np.bool_],
    *,
    epochs: int,
    rng: np.random.Generator,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_power: float = 0.5,
    augmentation: Augmentation = Augmentation(),
    log: Callable[[str], None] = print,
    **model_options: Any,
) -> Fitted:
    """Train a `LandCoverTAE` on the pixels of `patch` under `mask` (seed torch first)."""
    ndvi, clear, targets = _pixels(patch, mask)
    observed = ndvi[clear]
    mean, std = float(observed.mean()), float(observed.std())
    model = LandCoverTAE(ndvi_mean=mean, ndvi_std=std, **model_options)
    weights = class_weights(targets, len(LEGEND), power=weight_power)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, target, weight=weights, label_smoothing=0.05)

    batches = training_batches(
        ndvi, clear, patch.days, targets, batch_size=batch_size, augmentation=augmentation
    )
    record = fit(
        _Logits(model), batches, loss_fn, epochs=epochs, rng=rng, lr=lr, log=log, name=MODEL_NAME
    )
    return Fitted(model.eval(), record, weights, mean, std, targets)


def train_landcover(
    data_dir: Path,
    out_dir: Path,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    threads: int = 2,
    holdout_columns: int = 25,
    gap_columns: int = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    log: Callable[[str], None] = print,
) -> ModelCard:
    """Train `LandCoverTAE` on the patch in `data_dir` (`load_patch`) left of a held-out
    block of columns, evaluate on that block, write model.pt + card into `out_dir`."""
    started = time.perf_counter()
    rng = seed_everything(seed, threads)
    patch = load_patch(data_dir)
    split = spatial_split(patch.labels, holdout_columns, gap_columns)
    log(
        f"{MODEL_NAME}: {int(split.train.sum())} training pixels, "
        f"{int(split.holdout.sum())} held out, {len(patch.days)} dates"
    )
    augmentation = Augmentation()
    fitted = fit_landcover(
        patch,
        split.train,
        epochs=epochs,
        rng=rng,
        batch_size=batch_size,
        lr=lr,
        augmentation=augmentation,
        log=log,
    )
    model, targets = fitted.model, fitted.targets
    metrics = evaluate(model, patch, split.holdout)
    for name in EVALUATION_WINDOWS:
        report = metrics[name]
        log(
            f"{MODEL_NAME}: {name} OA {report['overall_accuracy']} kappa {report['kappa']} "
            f"mIoU {report['mean_iou']} macro F1 {report['macro_f1']}"
        )
    holdout_labels = patch.labels[split.holdout]
    train_counts, holdout_counts = _class_counts(targets), _class_counts(holdout_labels)
    holdout_total = len(holdout_labels)
    unseen = [name for name, n in train_counts.items() if n == 0]
    rare = [name for name, n in train_counts.items() if 0 < n < 50]
    rare_holdout = [name for name, n in holdout_counts.items() if n < 20]
    disturbed = metrics["diagnostic_disturbed_forest"]
    predicted_as = ", ".join(
        f"{name} {n}"
        for name, n in sorted(disturbed["2017"]["predicted_as"].items(), key=lambda kv: -kv[1])
        if n
    )
    rows, cols = patch.labels.shape
    card = ModelCard(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        max_batch_size=MAX_BATCH,
        task="classification",
        summary=(
            "Per-pixel land cover (eo-learn LULC legend) from a season of Sentinel-2 NDVI: "
            "a temporal attention encoder (TAE, Sainte Fare Garnot et al. 2020) over the "
            "cloud-free dates of one pixel, then an MLP. Trained on one real 1 km² patch "
            "in Slovenia; see the notes before trusting it elsewhere."
        ),
        inputs=[
            TensorSpec(
                "ndvi",
                [-1],
                "NDVI (B08 − B04) / (B08 + B04) of each date; ignored where valid is 0",
            ),
            TensorSpec(
                "valid",
                [-1],
                "1 = cloud-free observation, 0 = cloudy, missing or padded date",
            ),
            TensorSpec(
                "positions",
                [-1],
                "days since the first date (pass) of the window fed (a season or year); "
                "ignored where valid is 0",
            ),
        ],
        outputs=[
            TensorSpec(
                "probabilities",
                [len(LEGEND)],
                "class probabilities in `classes` order; uniform when no date is valid",
            )
        ],
        classes=list(LEGEND),
        data={
            "what": (
                "Sentinel-2 NDVI and cloud masks (CLM, 1 = cloud) of 68 dates and the "
                "LULC label raster (RABA land-use register, eo-learn LULC codes) of one "
                f"{rows} × {cols} px patch at 10 m"
            ),
            "where": "Slovenia, 1 km × 1 km (EPSG:32633), data/eo-learn",
            "source": "sentinel-hub/eo-learn example_data/TestEOPatch",
            "licence": "MIT (data/eo-learn/LICENSE)",
            "dates": (
                f"{len(patch.dates)} dates {patch.dates[0]} .. {patch.dates[-1]}, "
                f"{100 * float(patch.cloud.mean()):.1f} % of the observations cloudy"
            ),
            "label_codes": {name: code for name, code in zip(LEGEND, LEGEND_CODES, strict=True)},
            "pixels_labelled": int((patch.labels >= 0).sum()),
            "pixels_no_data": int((patch.labels < 0).sum()),
            "pixels_train": len(targets),
            "pixels_gap": int(split.gap.sum()),
            "pixels_holdout": int(split.holdout.sum()),
            "classes_train": train_counts,
            "classes_holdout": holdout_counts,
        },
        split={
            "kind": "spatial block",
            "train": f"columns {split.train_columns[0]}..{split.train_columns[1] - 1}",
            "gap": (
                f"{gap_columns} columns ({10 * gap_columns} m) between the blocks, used by "
                "neither, to limit spatial autocorrelation leakage"
            ),
            "holdout": (
                f"the right-most {holdout_columns} columns "
                f"{split.holdout_columns[0]}..{split.holdout_columns[1] - 1}, all rows"
            ),
            "evaluation": (
                "held-out pixels over each full calendar year (2016, 2017) and over "
                "January-June 2017 (a season half-way); positions: days since the first "
                "date of the window"
            ),
            "no_data": "pixels labelled 0 (no data) are neither trained on nor evaluated",
        },
        metrics=metrics,
        training={
            **fitted.training,
            **training_environment(threads),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "seed": seed,
            "batch_size": batch_size,
            "loss": (
                "cross-entropy, label smoothing 0.05, class weights (n_max / n_c) ** 0.5 "
                "capped at 10: "
                + ", ".join(
                    f"{n} {w:.2f}" for n, w in zip(LEGEND, fitted.weights.tolist(), strict=True)
                )
            ),
            "augmentation": augmentation.describe(),
            "architecture": (
                "per date [normalised NDVI, departure from the pixel's mean] -> MLP 2-32-32; "
                "TAE 4 heads, d_k 8, MLP 32-64-64; decoder 64-32-K"
            ),
        },
        input_statistics={"ndvi": {"mean": round(fitted.mean, 6), "std": round(fitted.std, 6)}},
        reproduce=REPRODUCE,
        notes=[
            "NDVI only: no other band, no Sentinel-1; classes that NDVI series do not "
            "separate well (grassland, shrubland, forest edges, artificial surface with "
            "gardens) are confused.",
            "One 1 km² patch in Slovenia (mostly forest): the model has seen one region, "
            "one climate and 2.5 years of dates; expect it to transfer poorly elsewhere.",
            "Held-out block and training block are neighbours in one patch: spatial "
            "autocorrelation (parcels crossing the boundary) makes the held-out metrics "
            f"optimistic despite the {gap_columns}-column gap.",
            f"Class imbalance: forest is {100 * train_counts['forest'] / len(targets):.0f} % "
            f"of the training pixels and {100 * holdout_counts['forest'] / holdout_total:.0f} "
            "% of the held-out ones (the majority-class baseline in the metrics: compare "
            "kappa, mIoU and macro F1 with it, not the overall accuracy). Never seen in "
            f"training: {', '.join(unseen) or 'none'}; rare in training (< 50 px): "
            f"{', '.join(rare) or 'none'}; rare among the held-out pixels (< 20 px): "
            f"{', '.join(rare_holdout) or 'none'}: their scores say little.",
            "Labels are the land-use register, not what the satellite sees: "
            f"{disturbed['2017']['pixels']} held-out 'forest' pixels lost their canopy by "
            "summer 2017 (logging or damage; June-August NDVI < "
            f"{FOREST_SUMMER_NDVI}); most of the 2017 forest errors are there "
            f"(predicted as: {predicted_as}). Without them 2017 "
            f"scores OA {disturbed['2017']['without_them']['overall_accuracy']}, kappa "
            f"{disturbed['2017']['without_them']['kappa']} (metrics: "
            "diagnostic_disturbed_forest).",
            "The legend is the patch's 5 classes: the model cannot predict water, wetlands, "
            "bareland, snow and ice or tundra; the water indicator is not available.",
            "Training windows start anywhere in the series, so positions carry relative "
            "timing, not the season: the model relies on the NDVI level and its variation. "
            f"{100 * augmentation.short_share:.0f} % of them are "
            f"{augmentation.short_days:.0f}-{augmentation.min_days:.0f} days long, for "
            "seasons under way (holdout_2017_jan_jun).",
            "How the defaults were chosen, on an inner spatial validation block of the "
            "training area (trained on columns 0-47, validated on 50-72), never on the "
            "held-out block: class weight power 0 / 0.5 / 1, share of short windows 0 / "
            "0.1 / 0.25, 40 / 80 / 100 epochs, a wider model (E 64, TAE MLP 128-64). Seeds "
            "varied as much as most settings; power 0 never predicted shrubland or "
            "artificial surface; power 1 and no short windows made January-June "
            "predictions collapse; more epochs or a wider model gained nothing.",
            "Seeds matter, for seasons under way most: with the defaults, seeds 0, 1, 2 "
            "scored held-out kappa 0.40 / 0.37 / 0.31 (2016), 0.32 / 0.31 / 0.32 (2017) and "
            "0.12 / 0.29 / 0.34 (January-June 2017) when version 1 was trained (seed 0 "
            "committed, not chosen by score): early-season predictions are unreliable.",
        ],
    )
    save_model(out_dir, model, card)
    log(f"{MODEL_NAME}: wrote {out_dir} in {time.perf_counter() - started:.0f} s")
    return card
