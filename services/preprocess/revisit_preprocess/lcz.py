"""LCZ patches: 32×32 cuts of a city AOI, in the band order and scaling of So2Sat LCZ42."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from shapely.geometry import box

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_preprocess.raster import BandStack

#: The So2Sat LCZ42 band order (10 bands at 10 m).
LCZ_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


@dataclass(frozen=True)
class LczGrid:
    """How a city AOI is cut into patches.

    `stride_px` is the distance between patch origins; each patch labels the
    `stride_px`×`stride_px` cell at its centre (the whole patch when stride = patch).
    """

    patch_px: int = 32
    stride_px: int = 32
    min_valid_fraction: float = 1.0
    #: A scene without a band may use a neighbour in its place (WorldCereal has no B8A).
    substitutes: dict[str, str] = field(default_factory=lambda: {"B8A": "B08"})


def select_bands(scene: pb.SceneDiscovered, grid: LczGrid) -> tuple[list[pb.BandAsset], list[str]]:
    """The scene's assets in LCZ band order, and notes on the substitutions made."""
    by_name = {b.band: b for b in scene.bands}
    chosen, notes = [], []
    for name in LCZ_BANDS:
        if name in by_name:
            chosen.append(by_name[name])
            continue
        stand_in = grid.substitutes.get(name)
        if stand_in in by_name:
            chosen.append(by_name[stand_in])
            notes.append(f"{name} missing: {stand_in} used in its place")
            continue
        raise PoisonError(
            f"scene {scene.header.scene_id} has no {name} asset (bands: {sorted(by_name)})"
        )
    return chosen, notes


def cut_patches(
    stack: BandStack, grid: LczGrid
) -> tuple[npt.NDArray[np.float32], list[pb.LczPatch]]:
    """Patches whose labelled cell touches the AOI and whose pixels are valid enough."""
    size, stride = grid.patch_px, grid.stride_px
    margin = (size - stride) // 2 if stride < size else 0
    cell = min(stride, size)
    arrays, patches = [], []
    rows, cols = stack.valid.shape
    epsg = stack.crs.to_epsg() or 0
    for r in range(0, rows - size + 1, stride):
        for c in range(0, cols - size + 1, stride):
            x0, y0 = stack.transform @ (c + margin, r + margin)
            x1, y1 = stack.transform @ (c + margin + cell, r + margin + cell)
            footprint = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            if not footprint.intersects(stack.aoi):
                continue
            valid_fraction = float(stack.valid[r : r + size, c : c + size].mean())
            if valid_fraction < grid.min_valid_fraction:
                continue
            patch = stack.reflectance[:, r : r + size, c : c + size]
            arrays.append(np.where(stack.valid[r : r + size, c : c + size], patch, 0.0))
            patches.append(
                pb.LczPatch(
                    cell_id=f"{epsg}:{round(x0)}:{round(y0)}",
                    cell_wkt=footprint.wkt,
                    valid_fraction=valid_fraction,
                )
            )
    if not arrays:
        return np.zeros((0, len(LCZ_BANDS), size, size), np.float32), []
    return np.stack(arrays).astype(np.float32), patches
