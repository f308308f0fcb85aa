"""`revisit train pse-tae`: train PSE-TAE (S2) or its S1+S2 fusion on pixel-set datasets.

The split is what the seeds ask about: hold out regions (a tile, an H3 cell: does the
model work somewhere it has not seen?) or years (does it work next season?); without
either, a stratified random share is held out. Held-out metrics are reported for the
whole season and for the season so far at 90, 180 and 270 days, because the service
re-predicts parcels pass by pass and early predictions must be read as such. Training
truncates seasons at random for the same reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from revisit_common.cards import ModelCard, TensorSpec
from revisit_models.artefact import save_model, training_environment
from revisit_models.metrics import classification_report, summary
from revisit_models.pixelset_data import (
    Batch,
    DatasetError,
    PixelSetDataset,
    collate,
    concatenate,
    load_dataset,
)
from revisit_models.psetae import GEOMFEAT, S1_FEATURES, PseTae, PseTaeFusion
from revisit_models.training import fit, minibatches, seed_everything

MODALITIES = ("s2", "s1s2")
OTHER = "other"
EARLY_DAYS = (90, 180, 270)
PERIOD_DAYS = 30


def legend(labels: Sequence[str], min_samples: int) -> tuple[list[str], dict[str, str]]:
    """Classes with at least `min_samples` samples; the rarer ones are merged into "other"."""
    counts = Counter(labels)
    kept = sorted(c for c, n in counts.items() if n >= min_samples)
    mapping = {c: (c if c in kept else OTHER) for c in counts}
    classes = kept + (
        [OTHER] if any(v == OTHER for v in mapping.values()) and OTHER not in kept else []
    )
    return classes, mapping


def split(
    data: PixelSetDataset,
    targets: npt.NDArray[np.int64],
    rng: np.random.Generator,
    holdout_regions: Sequence[str] = (),
    holdout_years: Sequence[int] = (),
    holdout_fraction: float = 0.2,
) -> tuple[list[int], list[int], dict[str, Any]]:
    """Train and held-out indices, and a description of the split for the model card."""
    n = len(data)
    if holdout_regions or holdout_years:
        unknown = set(holdout_regions) - set(data.regions)
        if unknown:
            raise DatasetError(
                f"no parcel in region(s) {sorted(unknown)}: regions are {sorted(set(data.regions))}"
            )
        held = [
            i
            for i in range(n)
            if data.regions[i] in holdout_regions or data.years[i] in holdout_years
        ]
        kind = "spatial" if holdout_regions else "temporal"
        if holdout_regions and holdout_years:
            kind = "spatial and temporal"
        described: dict[str, Any] = {
            "kind": kind,
            "holdout_regions": list(holdout_regions),
            "holdout_years": list(holdout_years),
        }
    else:
        held = []
        for c in np.unique(targets):
            members = rng.permutation(np.flatnonzero(targets == c))
            held += members[: round(len(members) * holdout_fraction)].tolist()
        described = {"kind": "stratified random", "holdout_fraction": holdout_fraction}
    held_set = set(held)
    train = [i for i in range(n) if i not in held_set]
    if not train or not held:
        raise DatasetError(
            f"the split leaves {len(train)} training and {len(held)} held-out parcels"
        )
    described.update(train_parcels=len(train), holdout_parcels=len(held))
    return train, sorted(held_set), described


def _statistics(
    data: PixelSetDataset, index: Sequence[int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    values = np.concatenate(
        [data.pixels[i].transpose(1, 0, 2).reshape(len(data.channels), -1) for i in index], axis=1
    )
    observed = (values != 0).any(axis=0)
    return values[:, observed].mean(1), values[:, observed].std(1)


def seasonal_statistics(
    data: PixelSetDataset, index: Sequence[int], period_days: int = PERIOD_DAYS
) -> dict[str, Any]:
    """Per-band mean and std of the observed pixels, per period of the season.

    What drift monitoring compares a pass with: a June pass against the June of the
    training data, not against the whole season (phenology alone moves a month's mean
    by up to ~0.9 std of the season's).
    """
    bins: dict[str, Any] = {}
    columns: dict[int, list[npt.NDArray[np.float32]]] = {}
    for i in index:
        for t, day in enumerate(data.positions[i]):
            values = data.pixels[i][t]  # (C, S)
            observed = values[:, (values != 0).any(axis=0)]
            if observed.size:
                columns.setdefault(int(day // period_days), []).append(observed)
    for period in sorted(columns):
        values = np.concatenate(columns[period], axis=1)
        bins[str(period)] = {
            "mean": np.round(values.mean(1), 5).tolist(),
            "std": np.round(values.std(1), 5).tolist(),
            "pixels": int(values.shape[1]),
        }
    return {"period_days": period_days, "channels": data.channels, "periods": bins}


def _s1_statistics(
    data: PixelSetDataset, index: Sequence[int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    assert data.s1 is not None
    rows = np.concatenate([data.s1[i] for i in index])
    rows = rows[np.isfinite(rows).all(axis=1)]
    return rows.mean(0), rows.std(0)


def _focal_loss(gamma: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = probabilities.gather(1, target[:, None]).squeeze(1).clamp(min=1e-7)
        return (-((1 - p) ** gamma) * torch.log(p)).mean()

    return loss


def _predict(
    model: torch.nn.Module,
    data: PixelSetDataset,
    index: Sequence[int],
    fusion: bool,
    pixels: int,
    until_day: float | None,
    seed: int,
) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    parts = []
    with torch.inference_mode():
        for start in range(0, len(index), 128):
            chunk = index[start : start + 128]
            cut = None if until_day is None else [until_day] * len(chunk)
            batch = collate(data, chunk, rng, pixels, cut)
            parts.append(model(*batch.inputs(fusion)).numpy())
    return np.concatenate(parts)


def train_psetae(
    data_dirs: Sequence[Path],
    out_dir: Path,
    *,
    modality: str = "s2",
    label_type: str | None = None,
    holdout_regions: Sequence[str] = (),
    holdout_years: Sequence[int] = (),
    holdout_fraction: float = 0.2,
    min_samples: int = 5,
    pixels: int = 64,
    epochs: int = 60,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    threads: int = 1,
    norm: Path | None = None,
    name: str | None = None,
    version: str = "1",
    reproduce: str = "",
    log: Callable[[str], None] = print,
) -> ModelCard:
    """Train, evaluate on the held-out parcels, write model.pt + card into out_dir."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
    started = time.perf_counter()
    rng = seed_everything(seed, threads)
    fusion = modality == "s1s2"
    data = concatenate(load_dataset(d, label_type, norm) for d in data_dirs)
    if fusion and data.s1 is None:
        raise DatasetError("the S1+S2 model needs DATA_S1/ and META/dates_s1.json in every dataset")
    largest = max(x.shape[2] for x in data.pixels)
    if largest < pixels:  # sets are padded to `pixels`: no need to pad beyond the largest
        log(f"the largest pixel set has {largest} pixels: sampling {largest}, not {pixels}")
        pixels = largest
    classes, mapping = legend(data.labels, min_samples)
    targets = np.array([classes.index(mapping[label]) for label in data.labels], np.int64)
    train, held, split_card = split(
        data, targets, rng, holdout_regions, holdout_years, holdout_fraction
    )
    log(
        f"{len(data)} parcels, {len(classes)} classes; "
        f"training on {len(train)}, holding out {len(held)}"
    )

    model: PseTae | PseTaeFusion
    use_geomfeat = data.geomfeat is not None
    model = (
        PseTaeFusion(len(classes), use_geomfeat) if fusion else PseTae(len(classes), use_geomfeat)
    )
    given = data.sources[0].get("normalisation")
    mean, std = (
        (np.asarray(given["mean"]), np.asarray(given["std"])) if given else _statistics(data, train)
    )
    model.s2.pse.normalise.set(
        torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    )
    statistics: dict[str, Any] = {
        "s2": {
            "channels": data.channels,
            "mean": np.round(mean, 5).tolist(),
            "std": np.round(std, 5).tolist(),
        },
        "s2_by_period": seasonal_statistics(data, train),
        "class_prior": {
            c: round(float((targets[train] == k).mean()), 4) for k, c in enumerate(classes)
        },
    }
    if use_geomfeat and data.geomfeat is not None:
        g = data.geomfeat[train]
        model.s2.pse.geom_normalise.set(torch.tensor(g.mean(0)), torch.tensor(g.std(0)))
    if isinstance(model, PseTaeFusion):
        s1_mean, s1_std = _s1_statistics(data, train)
        model.s1.normalise.set(
            torch.tensor(s1_mean, dtype=torch.float32), torch.tensor(s1_std, dtype=torch.float32)
        )
        statistics["s1"] = {
            "features": list(S1_FEATURES),
            "mean": np.round(s1_mean, 4).tolist(),
            "std": np.round(s1_std, 4).tolist(),
        }
    season_end = max(float(p.max()) for p in data.positions)

    def batches(rng: np.random.Generator) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        out = []
        for chunk in minibatches(len(train), batch_size, rng):
            index = [train[i] for i in chunk]
            truncate = rng.random(len(index)) < 0.5
            cut = np.where(truncate, rng.uniform(45, season_end, len(index)), np.inf)
            drop = rng.random(len(index)) < 0.2 if fusion else None
            batch: Batch = collate(data, index, rng, pixels, cut.tolist(), drop)
            out.append((batch.inputs(fusion), torch.from_numpy(targets[index])))
        return out

    log(
        f"training {'PSE-TAE S1+S2' if fusion else 'PSE-TAE S2'} "
        f"for {epochs} epochs on {threads} threads"
    )
    fitted = fit(
        model,
        batches,
        _focal_loss(1.0),
        epochs=epochs,
        rng=rng,
        lr=lr,
        weight_decay=weight_decay,
        log=log,
        name="pse-tae",
    )

    metrics: dict[str, Any] = {}
    truth = targets[held]
    majority = int(np.bincount(targets[train]).argmax())
    metrics["majority_class_baseline_oa"] = round(float((truth == majority).mean()), 4)
    probabilities = _predict(model, data, held, fusion, pixels, None, seed)
    metrics["holdout_full_season"] = classification_report(truth, probabilities.argmax(1), classes)
    for day in EARLY_DAYS:
        early = _predict(model, data, held, fusion, pixels, float(day), seed)
        report = classification_report(truth, early.argmax(1), classes)
        metrics[f"holdout_first_{day}_days"] = summary(report)
    full = metrics["holdout_full_season"]
    log(
        f"held out: OA {full['overall_accuracy']} kappa {full['kappa']} mIoU {full['mean_iou']} "
        f"(majority-class baseline OA {metrics['majority_class_baseline_oa']})"
    )

    channels_doc = ", ".join(data.channels)
    inputs = [
        TensorSpec(
            "pixels",
            [-1, len(data.channels), -1],
            f"surface reflectance (0..1) of T dates × C bands ({channels_doc}) × S pixels",
        ),
        TensorSpec(
            "pixel_mask",
            [-1, -1],
            "1 where the pixel is observed at the date, 0 for cloud, no data or padding",
        ),
        TensorSpec("positions", [-1], "days since the season's start of each date"),
        TensorSpec(
            "geomfeat",
            [len(GEOMFEAT)],
            "parcel "
            + ", ".join(GEOMFEAT)
            + (
                " (used)"
                if use_geomfeat
                else " (ignored by this model: no parcel geometry in its training data)"
            ),
        ),
    ]
    if fusion:
        inputs += [
            TensorSpec(
                "s1",
                [-1, len(S1_FEATURES)],
                "per Sentinel-1 pass: " + ", ".join(S1_FEATURES) + " (dB)",
            ),
            TensorSpec("s1_valid", [-1], "1 for a real Sentinel-1 pass, 0 for padding"),
            TensorSpec(
                "s1_positions", [-1], "days since the season's start of each Sentinel-1 pass"
            ),
        ]
    label_counts = Counter(mapping[label] for label in data.labels)
    card = ModelCard(
        name=name or ("psetae_s1s2" if fusion else "psetae_s2"),
        version=version,
        task="classification",
        summary=(
            f"PSE-TAE ({'Sentinel-1 + Sentinel-2 fusion' if fusion else 'Sentinel-2'}) crop "
            f"classifier: {len(classes)} classes, trained on {len(train)} parcels."
        ),
        inputs=inputs,
        outputs=[
            TensorSpec(
                "probabilities", [len(classes)], "class probabilities, in the order of `classes`"
            )
        ],
        classes=classes,
        data={
            "datasets": [{k: v for k, v in s.items() if k != "dates"} for s in data.sources],
            "label_type": label_type or "first nomenclature",
            "parcels": len(data),
            "class_counts": dict(sorted(label_counts.items())),
            "merged_into_other": sorted(k for k, v in mapping.items() if v == OTHER and k != OTHER),
            "min_samples_per_class": min_samples,
            "regions": dict(sorted(Counter(data.regions).items())),
        },
        split=split_card,
        metrics=metrics,
        training={
            **fitted,
            "batch_size": batch_size,
            "pixels_per_set": pixels,
            "loss": "focal loss, gamma 1",
            "augmentation": "season truncated at a random day for half the samples"
            + ("; Sentinel-1 dropped for 20 %" if fusion else ""),
            "seed": seed,
            **training_environment(threads),
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        input_statistics=statistics,
        reproduce=reproduce,
        max_batch_size=256,
    )
    save_model(out_dir, model, card)
    log(f"wrote {out_dir}/model.pt and its card")
    return card
