"""A seeded, real-shaped parcel register and its crop-type predictions, for benchmarks.

Parcels are rectangles of about 1 to 2.5 ha on a grid in UTM zone 31N (EPSG:32631)
centred on 50.6 N 5.3 E (Hesbaye, Belgium), with a gap between neighbours, transformed to
EPSG:4326 as the `parcel` table stores them. Declared crops are the crop model's class
names (`psetae_s2`), register codes that `crop_class_map` maps to a class, or nothing.
Predictions agree with the declared crop most of the time, so that some parcels are
flagged by `parcel_control`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from pyproj import Transformer

#: The classes of the crop model `psetae_s2` (data/models/psetae_s2/2/card.json).
CLASSES = [
    "dry_pulses_legumes",
    "fibre_crops",
    "maize",
    "other_oilseeds",
    "root_tuber_crops",
    "sorghum",
    "sunflower",
    "trees_mixed",
    "other",
]
#: Register codes (as in an LPIS export) -> class; loaded into `crop_class_map`.
CODES = {"201": "maize", "202": "maize", "311": "sunflower", "411": "root_tuber_crops"}
CENTRE = (5.3, 50.6)  # lon, lat
CELL = (175.0, 150.0)  # grid step in metres (x, y)
EPSG = 32631


@dataclass(frozen=True)
class Parcels:
    n: int
    seed: int = 7

    def _rng(self, part: int) -> np.random.Generator:
        """One generator per property, so that none depends on which was read first."""
        return np.random.default_rng((self.seed, part))

    @cached_property
    def external_ids(self) -> list[str]:
        return [f"BE-WAL-{i:07d}" for i in range(self.n)]

    @cached_property
    def _utm_boxes(self) -> np.ndarray:
        """(n, 4) xmin, ymin, xmax, ymax in EPSG:32631."""
        cols = int(np.ceil(np.sqrt(self.n)))
        to_utm = Transformer.from_crs(4326, EPSG, always_xy=True)
        cx, cy = to_utm.transform(*CENTRE)
        i = np.arange(self.n)
        x0 = cx - cols * CELL[0] / 2 + (i % cols) * CELL[0]
        y0 = cy - cols * CELL[1] / 2 + (i // cols) * CELL[1]
        rng = self._rng(1)
        width = rng.uniform(105.0, 170.0, self.n)
        height = rng.uniform(95.0, 145.0, self.n)
        return np.column_stack([x0, y0, x0 + width, y0 + height])

    @cached_property
    def geometries(self) -> np.ndarray:
        """Polygons in EPSG:4326 (shapely array)."""
        to_wgs84 = Transformer.from_crs(EPSG, 4326, always_xy=True)
        boxes = shapely.box(*self._utm_boxes.T)
        return shapely.transform(
            boxes, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
        )

    @cached_property
    def areas_ha(self) -> np.ndarray:
        b = self._utm_boxes
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / 10_000

    @cached_property
    def ewkt(self) -> list[str]:
        """The geometries as EWKT, full precision (what COPY into `parcel.geom` takes)."""
        return [
            "SRID=4326;" + w
            for w in shapely.to_wkt(self.geometries, rounding_precision=-1, trim=True)
        ]

    @cached_property
    def points(self) -> np.ndarray:
        """(n, 2) lon, lat of a point inside each parcel."""
        return shapely.get_coordinates(shapely.point_on_surface(self.geometries))

    @cached_property
    def true_class(self) -> np.ndarray:
        """The crop of each parcel (class index), maize and sugar beet most common."""
        weights = np.array([4, 1, 30, 6, 25, 1, 2, 6, 25], float)
        return self._rng(2).choice(len(CLASSES), self.n, p=weights / weights.sum())

    @cached_property
    def declared_crops(self) -> list[str | None]:
        """90 % the class name, 7 % a register code of that class, 3 % nothing."""
        codes_of: dict[str, list[str]] = {}
        for code, name in CODES.items():
            codes_of.setdefault(name, []).append(code)
        draw = self._rng(3).random(self.n)
        out: list[str | None] = []
        for k, r in zip(self.true_class, draw, strict=True):
            name = CLASSES[k]
            if r < 0.03:
                out.append(None)
            elif r < 0.10 and name in codes_of:
                out.append(codes_of[name][int(r * 1000) % len(codes_of[name])])
            else:
                out.append(name)
        return out

    def predictions(self, pass_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class, confidence and probabilities of every parcel as of a pass: right
        ~90 % of the time, surer as the season goes on."""
        rng = np.random.default_rng((self.seed, 100 + pass_index))
        wrong = rng.random(self.n) < 0.10
        other = (self.true_class + rng.integers(1, len(CLASSES), self.n)) % len(CLASSES)
        code = np.where(wrong, other, self.true_class)
        confidence = np.clip(rng.beta(6 + pass_index, 2, self.n), 0.2, 0.99).astype(np.float32)
        probabilities = np.repeat(
            ((1 - confidence) / (len(CLASSES) - 1))[:, None], len(CLASSES), axis=1
        )
        probabilities[np.arange(self.n), code] = confidence
        return code, confidence, probabilities.astype(np.float32)
