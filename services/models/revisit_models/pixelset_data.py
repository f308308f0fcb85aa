"""Parcel pixel-set datasets in the layout of the public PSE-TAE / S2-Agri dataset.

The layout (Sainte Fare Garnot et al.; github.com/VSainteuf/pytorch-psetae), which
users can bring as is (S2-Agri) or write from their own parcels:

    DATA/<id>.npy            (T, C, S) pixel values of parcel <id>: T dates, C bands,
                             S pixels (S varies by parcel); S2-Agri stores uint16 DN
    META/labels.json         {nomenclature: {id: label}}, labels int or str
    META/dates.json          {"0": YYYYMMDD, "1": ...}: the date of each of the T steps
    META/geomfeat.json       {id: [4 geometric features]} (optional)

and the optional files that revisit adds (all keyed by parcel id):

    META/regions.json        {id: region}: for spatial hold-out (a tile, an H3 cell)
    META/years.json          {id: year}: for temporal hold-out (default: the dates' year)
    META/classes.json        {nomenclature: [names]}: names of integer labels
    META/normalisation.json  {"mean": [C], "std": [C]} in DATA units (otherwise the
                             training split's statistics are used; S2-Agri ships a
                             pickle of (mean, std): pass it with --norm)
    META/dataset.json        {"channels": [...], "value_scale": 10000, "source": ...,
                             "licence": ..., "s1_features": [...]}
    DATA_S1/<id>.npy         (T1, F) per-pass Sentinel-1 statistics (dB), NaN = no pass
    META/dates_s1.json       the dates of the T1 Sentinel-1 steps

A pixel is unobserved at a date when any of its values is not finite or all are 0
(cloud, no data): converters write zeros there. Positions are days since the first
date of the dataset (the season's start).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from revisit_models.psetae import GEOMFEAT, S1_FEATURES, S2_BANDS


class DatasetError(ValueError):
    """The directory is not a readable pixel-set dataset; the message says why."""


@dataclass
class PixelSetDataset:
    """Parcels of one or more dataset directories, in memory, values in physical units."""

    ids: list[str]
    pixels: list[npt.NDArray[np.float32]]  # (T, C, S) reflectance, 0 = unobserved
    positions: list[npt.NDArray[np.float32]]  # (T,) days since the season start
    labels: list[str]
    regions: list[str]
    years: list[int]
    geomfeat: npt.NDArray[np.float32] | None  # (N, 4), or None when no parcel geometry
    s1: list[npt.NDArray[np.float32]] | None = None  # (T1, F) dB, NaN = no pass
    s1_positions: list[npt.NDArray[np.float32]] | None = None
    channels: list[str] = field(default_factory=lambda: list(S2_BANDS))
    sources: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int]) -> PixelSetDataset:
        pick = list(index)

        def take(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in pick]

        return PixelSetDataset(
            ids=[self.ids[i] for i in pick],
            pixels=[self.pixels[i] for i in pick],
            positions=[self.positions[i] for i in pick],
            labels=[self.labels[i] for i in pick],
            regions=[self.regions[i] for i in pick],
            years=[self.years[i] for i in pick],
            geomfeat=None if self.geomfeat is None else self.geomfeat[pick],
            s1=take(self.s1),
            s1_positions=take(self.s1_positions),
            channels=self.channels,
            sources=self.sources,
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None


def _dates(path: Path) -> list[date]:
    raw = _read_json(path)
    try:
        values = [str(raw[k]) for k in sorted(raw, key=int)]
        return [date(int(v[:4]), int(v[4:6]), int(v[6:8])) for v in values]
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: dates must be {{index: YYYYMMDD}} ({exc})") from None


def _normalisation(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if path.suffix == ".pkl":  # S2-Agri's own file: a pickled (mean, std); the user's file
        with path.open("rb") as f:
            mean, std = pickle.load(f)
    else:
        raw = _read_json(path)
        mean, std = raw["mean"], raw["std"]
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    if m.ndim == 2:  # S2-Agri gives them per date and band: average over dates
        m, s = m.mean(0), s.mean(0)
    return m, s


def load_dataset(
    directory: Path,
    label_type: str | None = None,
    norm: Path | None = None,
    value_scale: float | None = None,
) -> PixelSetDataset:
    """Read a dataset directory (module docstring); values are divided by value_scale."""
    if not (directory / "DATA").is_dir():
        raise DatasetError(f"{directory} has no DATA/ folder: not a PSE-TAE/S2-Agri dataset")
    meta = directory / "META"
    described = _read_json(meta / "dataset.json") if (meta / "dataset.json").exists() else {}
    nomenclatures = _read_json(meta / "labels.json")
    if label_type is None:
        label_type = next(iter(nomenclatures))
    if label_type not in nomenclatures:
        raise DatasetError(
            f"{meta / 'labels.json'} has no nomenclature {label_type!r} "
            f"(it has {sorted(nomenclatures)})"
        )
    labels: dict[str, Any] = nomenclatures[label_type]
    names: list[str] | None = None
    if (meta / "classes.json").exists():
        names = _read_json(meta / "classes.json").get(label_type)
    dates = _dates(meta / "dates.json")
    positions = np.array([(d - dates[0]).days for d in dates], np.float32)
    regions = _read_json(meta / "regions.json") if (meta / "regions.json").exists() else {}
    years = _read_json(meta / "years.json") if (meta / "years.json").exists() else {}
    geom = _read_json(meta / "geomfeat.json") if (meta / "geomfeat.json").exists() else None
    scale = value_scale or float(described.get("value_scale", 10000.0))
    channels = list(described.get("channels", S2_BANDS))
    season_year = dates[len(dates) // 2].year

    s1_dir = directory / "DATA_S1"
    s1_positions = None
    if s1_dir.is_dir():
        s1_dates = _dates(meta / "dates_s1.json")
        s1_positions = np.array([(d - dates[0]).days for d in s1_dates], np.float32)

    ids = sorted(labels, key=lambda k: (len(k), k))
    with_s1 = s1_positions is not None
    out = PixelSetDataset(
        [], [], [], [], [], [], None, [] if with_s1 else None, [] if with_s1 else None
    )
    out.channels, out.sources = channels, [{"directory": str(directory), **described}]
    geometry: list[list[float]] = []
    for pid in ids:
        path = directory / "DATA" / f"{pid}.npy"
        if not path.exists():
            raise DatasetError(f"{path} is missing (parcel {pid} is in labels.json)")
        raw = np.load(path, allow_pickle=False).astype(np.float32)
        if raw.ndim != 3 or raw.shape[0] != len(dates) or raw.shape[1] != len(channels):
            raise DatasetError(
                f"{path}: shape {raw.shape}, expected ({len(dates)}, {len(channels)}, S)"
            )
        unobserved = ~np.isfinite(raw).all(axis=1) | (raw == 0).all(axis=1)  # (T, S)
        values = np.where(unobserved[:, None, :], 0.0, raw / scale).astype(np.float32)
        label = labels[pid]
        out.ids.append(pid)
        out.pixels.append(values)
        out.positions.append(positions)
        out.labels.append(names[int(label)] if names is not None else str(label))
        out.regions.append(str(regions.get(pid, directory.name)))
        out.years.append(int(years.get(pid, season_year)))
        if geom is not None:
            geometry.append([float(v) for v in geom[pid]][: len(GEOMFEAT)])
        if out.s1 is not None and out.s1_positions is not None and s1_positions is not None:
            s1_path = s1_dir / f"{pid}.npy"
            s1 = (
                np.load(s1_path, allow_pickle=False).astype(np.float32)
                if s1_path.exists()
                else np.full((len(s1_positions), len(S1_FEATURES)), np.nan, np.float32)
            )
            out.s1.append(s1)
            out.s1_positions.append(s1_positions)
    if geom is not None:
        out.geomfeat = np.asarray(geometry, np.float32)
    if norm is None and (meta / "normalisation.json").exists():
        norm = meta / "normalisation.json"
    if norm is not None:
        mean, std = _normalisation(norm)
        out.sources[0]["normalisation"] = {
            "mean": (mean / scale).tolist(),
            "std": (std / scale).tolist(),
        }
    return out


def concatenate(parts: Iterable[PixelSetDataset]) -> PixelSetDataset:
    """One dataset from several directories (their dates may differ)."""
    items = list(parts)
    if not items:
        raise DatasetError("no dataset given")
    with_s1 = all(p.s1 is not None for p in items)
    geoms = [p.geomfeat for p in items]
    return PixelSetDataset(
        ids=[i for p in items for i in p.ids],
        pixels=[x for p in items for x in p.pixels],
        positions=[x for p in items for x in p.positions],
        labels=[x for p in items for x in p.labels],
        regions=[x for p in items for x in p.regions],
        years=[x for p in items for x in p.years],
        geomfeat=np.concatenate([g for g in geoms if g is not None])
        if all(g is not None for g in geoms)
        else None,
        s1=[x for p in items for x in (p.s1 or [])] if with_s1 else None,
        s1_positions=[x for p in items for x in (p.s1_positions or [])] if with_s1 else None,
        channels=items[0].channels,
        sources=[s for p in items for s in p.sources],
    )


def write_parcel(
    directory: Path,
    pid: str,
    pixels: npt.NDArray[Any],
    s1: npt.NDArray[np.float32] | None = None,
) -> None:
    """Write one parcel's arrays (DATA/<pid>.npy, DATA_S1/<pid>.npy)."""
    (directory / "DATA").mkdir(parents=True, exist_ok=True)
    np.save(directory / "DATA" / f"{pid}.npy", pixels)
    if s1 is not None:
        (directory / "DATA_S1").mkdir(parents=True, exist_ok=True)
        np.save(directory / "DATA_S1" / f"{pid}.npy", s1.astype(np.float32))


def write_meta(directory: Path, name: str, content: Any) -> None:
    (directory / "META").mkdir(parents=True, exist_ok=True)
    (directory / "META" / f"{name}.json").write_text(json.dumps(content, indent=1) + "\n")


def dates_json(dates: Sequence[date]) -> dict[str, int]:
    return {str(i): int(d.strftime("%Y%m%d")) for i, d in enumerate(dates)}


@dataclass
class Batch:
    """Padded tensors of a batch, in the models' argument order."""

    pixels: torch.Tensor  # (B, T, C, S)
    pixel_mask: torch.Tensor  # (B, T, S)
    positions: torch.Tensor  # (B, T)
    geomfeat: torch.Tensor  # (B, 4)
    s1: torch.Tensor | None = None  # (B, T1, F)
    s1_valid: torch.Tensor | None = None  # (B, T1)
    s1_positions: torch.Tensor | None = None  # (B, T1)

    def inputs(self, fusion: bool) -> list[torch.Tensor]:
        base = [self.pixels, self.pixel_mask, self.positions, self.geomfeat]
        if not fusion:
            return base
        assert self.s1 is not None and self.s1_valid is not None and self.s1_positions is not None
        return [*base, self.s1, self.s1_valid, self.s1_positions]


def collate(
    data: PixelSetDataset,
    index: Sequence[int],
    rng: np.random.Generator,
    pixels: int = 64,
    until_day: Sequence[float] | None = None,
    drop_s1: npt.NDArray[np.bool_] | None = None,
) -> Batch:
    """Sample `pixels` pixels per parcel (all of them, padded, when it has fewer), keep
    the dates up to `until_day` (per parcel: the season so far), pad dates to the longest.
    """
    n = len(index)
    cut = [float("inf")] * n if until_day is None else list(until_day)
    kept = [data.positions[i] <= cut[k] for k, i in enumerate(index)]
    length = max(int(k.sum()) for k in kept) or 1
    channels = data.pixels[index[0]].shape[1]
    x = np.zeros((n, length, channels, pixels), np.float32)
    mask = np.zeros((n, length, pixels), np.float32)
    pos = np.zeros((n, length), np.float32)
    for k, i in enumerate(index):
        values = data.pixels[i][kept[k]]
        size = values.shape[2]
        chosen = rng.choice(size, pixels, replace=False) if size > pixels else np.arange(size)
        t = values.shape[0]
        x[k, :t, :, : len(chosen)] = values[:, :, chosen]
        mask[k, :t, : len(chosen)] = (values[:, :, chosen] != 0).any(axis=1)
        pos[k, :t] = data.positions[i][kept[k]]
    geom = (
        np.zeros((n, len(GEOMFEAT)), np.float32)
        if data.geomfeat is None
        else data.geomfeat[list(index)]
    )
    batch = Batch(
        torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(pos), torch.from_numpy(geom)
    )
    if data.s1 is not None and data.s1_positions is not None:
        kept1 = [data.s1_positions[i] <= cut[k] for k, i in enumerate(index)]
        length1 = max(int(k.sum()) for k in kept1) or 1
        features = data.s1[index[0]].shape[1]
        s1 = np.zeros((n, length1, features), np.float32)
        valid = np.zeros((n, length1), np.float32)
        pos1 = np.zeros((n, length1), np.float32)
        for k, i in enumerate(index):
            values = data.s1[i][kept1[k]]
            t = len(values)
            ok = np.isfinite(values).all(axis=1)
            if drop_s1 is not None and drop_s1[k]:
                ok[:] = False
            s1[k, :t] = np.where(ok[:, None], values, 0.0)
            valid[k, :t] = ok
            pos1[k, :t] = data.s1_positions[i][kept1[k]]
        batch.s1, batch.s1_valid, batch.s1_positions = (
            torch.from_numpy(s1),
            torch.from_numpy(valid),
            torch.from_numpy(pos1),
        )
    return batch
