"""`make bench` part preprocess: parcel pixel-set extraction on a full Sentinel-2 tile
(10980 × 10980 px at 10 m, 10 bands + SCL as COGs tiled from the real WorldCereal cube,
5632 real parcel shapes) versus a raw rasterio decode of the same windows, side by side.

The baseline reads, for every block of parcels, the same window of every band and of
the SCL at native resolution and does nothing else. The service does that and
everything else: reprojection-free grid mapping of 20 m bands, rasterising parcels,
masks, sampling, scaling. Ratio = baseline time / service time (1.0 = extraction is
free; goal ≥ 0.7). Peak memory is that of a fresh process extracting one scene.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
import shapely

from revisit_common import events_pb2 as pb
from revisit_preprocess.pixelsets import (
    DEFAULT_PIXEL_SETS,
    Parcel,
    blocks,
    extract_pixel_sets,
    pixel_windows,
)
from revisit_preprocess.raster import GDAL_ENV, read_window
from tests.bench.preprocess_scene import BenchScene, build_bench_scene

ROUNDS = 3
CACHE = Path(os.environ.get("REVISIT_CACHE_DIR", Path.home() / ".cache" / "revisit"))


def band_assets(scene: BenchScene) -> tuple[list[pb.BandAsset], pb.BandAsset]:
    bands = [
        pb.BandAsset(
            band=name, href=str(path), scale=1e-4, offset=-0.1, nodata=65535, has_nodata=True
        )
        for name, path in scene.bands.items()
    ]
    scl = pb.BandAsset(band="SCL", href=str(scene.scl), scale=1, nodata=0, has_nodata=True)
    return bands, scl


def raw_decode(bands: list[pb.BandAsset], parcels: list[Parcel]) -> int:
    """Decode the windows the service reads, and nothing else; returns pixels decoded."""
    decoded = 0
    with rasterio.Env(**GDAL_ENV), ExitStack() as opened:
        sources = [opened.enter_context(rasterio.open(b.href)) for b in bands]
        ref = sources[0]
        bounds = shapely.bounds(np.asarray([p.geometry for p in parcels], dtype=object))
        windows = pixel_windows(bounds, ref.transform, ref.width, ref.height)
        for window, _ in blocks(windows, DEFAULT_PIXEL_SETS.block_px):
            for band, src in zip(bands, sources, strict=True):
                data, _ = read_window(src, band.href, window, ref.transform)
                decoded += data.size
    return decoded


PEAK = """
import json, resource, sys
from tests.bench.test_bench_preprocess import band_assets, build_bench_scene, CACHE
from revisit_preprocess.pixelsets import Parcel, extract_pixel_sets

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
scene = build_bench_scene(CACHE / "bench" / "preprocess-scene")
bands, scl = band_assets(scene)
parcels = [Parcel(i, g) for i, g in scene.parcels]
before = rss("VmRSS:")
sets = extract_pixel_sets(bands, scl, parcels, "bench", parcels_crs=None)
print(json.dumps({"before": before, "peak": rss("VmHWM:"), "observed": sets.observed}))
"""


def test_bench_pixel_sets_vs_raw_decode() -> None:
    scene = build_bench_scene(CACHE / "bench" / "preprocess-scene")
    bands, scl = band_assets(scene)
    parcels = [Parcel(i, g) for i, g in scene.parcels]
    service_times, raw_times = [], []
    for _ in range(ROUNDS):  # alternate, so that both see the same page cache state
        t0 = time.perf_counter()
        decoded = raw_decode([*bands, scl], parcels)
        raw_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sets = extract_pixel_sets(bands, scl, parcels, "bench", parcels_crs=None)
        service_times.append(time.perf_counter() - t0)
    raw, service = min(raw_times), min(service_times)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", PEAK], capture_output=True, text=True, check=True, cwd=root
    )
    memory = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"\npreprocess, one {scene.size}x{scene.size} tile, 10 bands + SCL, "
        f"{len(parcels)} parcels ({sets.observed} observed, {sets.in_scene} on the tile), "
        f"S={DEFAULT_PIXEL_SETS.pixels}, blocks of {DEFAULT_PIXEL_SETS.block_px} px"
    )
    print(f"{'':<22}{'best s':>8}{'parcels/s':>11}{'Mpx/s':>8}   runs")
    for name, best, runs in (
        ("raw decode", raw, raw_times),
        ("service extraction", service, service_times),
    ):
        print(
            f"{name:<22}{best:>8.2f}{len(parcels) / best:>11.0f}{decoded / best / 1e6:>8.1f}   "
            + " ".join(f"{t:.2f}" for t in runs)
        )
    print(f"ratio service / raw decode: {raw / service:.2f} (goal >= 0.7)")
    print(
        f"peak memory of one scene in a fresh process: {memory['peak'] / 2**20:.0f} MiB "
        f"({(memory['peak'] - memory['before']) / 2**20:.0f} MiB above the process after imports)"
    )
    assert sets.observed > 0.5 * len(parcels) and memory["observed"] == sets.observed
