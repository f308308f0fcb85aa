"""LAI, canopy chlorophyll content and FCOVER from Sentinel-2 reflectance: a small neural
network trained on PROSAIL simulations (a "hybrid" inversion, as in the S2 Toolbox).

Pipeline
--------
1. Draw leaf, canopy, soil and geometry parameters from the priors below (seeded).
2. Run PROSAIL (PROSPECT-5 + 4SAIL, python package ``prosail``) for each draw: the
   bidirectional reflectance factor ("SDR") at 1 nm over 400..2500 nm.
3. Convolve with the Sentinel-2 MSI spectral response functions (ESA
   S2-SRF_COPE-GSEG-EOPG-TN-15-0007 v3.0, shipped in ``data/pyrsr``; each band's response
   normalised to sum 1 on the 1 nm grid) into the ten 10/20 m bands.
4. Add noise: ``R' = R * (1 + e_rel) + e_abs``, ``e_rel ~ N(0, 0.03)`` and
   ``e_abs ~ N(0, 0.005)`` independently per band and sample, clipped to [0, 1]. It stands
   for calibration, atmospheric-correction and model errors.
5. Train an MLP from 8 bands + the cosines of three angles to [LAI, CCC, FCOVER].

Priors
------
After the S2 Toolbox ATBD: M. Weiss, F. Baret, "S2ToolBox Level 2 products: LAI, FAPAR,
FCOVER", version 1.1, INRA, 2016 (Table "distribution of the input variables"),
as transcribed in the R package ``prosail`` of J.-B. Féret and F. de Boissieu
(``get_atbd_LUT_input``). Truncated Gaussians, all on (min, max) with (mean, std):

=========  ===========  ============  ======  =====  ========================
variable   unit         min..max      mean    std    at LAI -> LAI_conv
=========  ===========  ============  ======  =====  ========================
LAI        m²/m²        0..8          2       3      (the driver)
ALA        deg          30..80        60      30     55..65
hotspot    -            0.1..0.5      0.2     0.5    0.1..0.5
N          -            1.2..1.8      1.5     0.3    1.3..1.8
Cab        µg/cm²       20..90        45      30     45..90
Cm         g/cm²        0.003..0.011  0.005   0.005  0.005..0.011
Cw_rel     -            0.6..0.85     0.75    0.08   0.70..0.80
Cbrown     -            0..2          0       0.3    0..0.2
psoil      - (1 = dry)  0..1          0.25    0.6    0..0.4
rsoil      -            0.5..1.5      1.0     0.25   (not co-distributed)
=========  ===========  ============  ======  =====  ========================

- Co-distribution with LAI (ATBD): a variable V drawn on [Vmin, Vmax] is mapped to
  ``Vmin(L) + (V - Vmin) (Vmax(L) - Vmin(L)) / (Vmax - Vmin)`` where the bounds move
  linearly from (Vmin, Vmax) at LAI 0 to the last column at ``LAI_conv = 15``: dense
  canopies get greener, healthier, more erectophile-limited leaves and a darker soil.
- Cw = Cm * Cw_rel / (1 - Cw_rel) (equivalent water thickness from relative water
  content), Car = Cab / 4, no anthocyanins; ellipsoidal (Campbell) leaf angle
  distribution with mean angle ALA (``typelidf=2``).
- Soil: prosail's dry / wet soil spectra mixed by ``psoil`` and scaled by the brightness
  ``rsoil``.
- Geometry, uniform: sun zenith 20..75°, view zenith 0..10° (the MSI field of view),
  relative azimuth 0..180° (4SAIL is symmetric in it).

Where this deviates from the ATBD: LAI stops at 8 (not 15; crops and the sites we serve
rarely exceed it) while LAI_conv stays at 15; the ATBD's soil library and brightness
(0.5..3.5) are replaced by prosail's two-spectra soil model with a narrower brightness;
the ATBD draws the geometry from real Sentinel-2 orbits, here it is uniform with sun
zenith up to 75° so that mid-latitude winter scenes are covered; the ATBD uses 8 bands
B03..B07, B8A, B11, B12 and its noise model differs; we drop B8A (missing from the
WorldCereal archive) and use B08 instead.

Targets
-------
- LAI (m²/m²), one-sided green leaf area index as given to SAIL;
- CCC (g/m²) = Cab [µg/cm²] * LAI / 100;
- FCOVER = 1 - exp(-G(0) * LAI), the gap fraction seen from nadir in a turbid medium,
  with ``G(0) = sum_i f_i cos(theta_i)`` over prosail's own 18 Campbell leaf-inclination
  classes (5° wide, mid-points theta_i) for the sample's ALA: the projection of unit
  leaf area onto the horizontal (0.5 for a spherical distribution).

The model (`BiophysNet`) takes the ten production bands in their order B02, B03, B04,
B05, B06, B07, B08, B8A, B11, B12 (surface reflectance 0..1) and angles in degrees (sun
zenith, view zenith, relative azimuth); it ignores B02 (aerosol-sensitive) and B8A.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from revisit_common.cards import ModelCard, TensorSpec
from revisit_models.artefact import save_model, training_environment
from revisit_models.metrics import regression_report
from revisit_models.training import fit, minibatches, predict, seed_everything
from revisit_models.worldcereal import read_cropland, read_cube

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float64]

#: The production band order of the model's `reflectance` input.
S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: The bands the network actually uses (B02: aerosols; B8A: missing from the archive).
MODEL_BANDS: tuple[str, ...] = ("B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
MODEL_BAND_INDEX: tuple[int, ...] = tuple(S2_BANDS.index(b) for b in MODEL_BANDS)
ANGLES: tuple[str, ...] = ("sun_zenith", "view_zenith", "relative_azimuth")
VARIABLES: tuple[str, ...] = ("LAI", "CCC", "FCOVER")
#: Pixels in one Triton request (850 KB): an area's pixels go in a few large requests, not
#: thousands of 256-pixel ones that the per-request cost of the server would dominate.
MAX_BATCH = 16384
UNITS: tuple[str, ...] = ("m²/m²", "g/m²", "0-1")
WAVELENGTHS = np.arange(400, 2501)  # prosail's 1 nm grid

LAI_MAX = 8.0
LAI_CONV = 15.0  # the ATBD's LAI at which co-distributed ranges have fully converged
CAB_MAX = 90.0
#: Physical output ranges the model clamps to (eval mode): LAI, CCC, FCOVER.
OUTPUT_MIN: tuple[float, ...] = (0.0, 0.0, 0.0)
OUTPUT_MAX: tuple[float, ...] = (LAI_MAX, CAB_MAX * LAI_MAX / 100.0, 1.0)

NOISE_RELATIVE = 0.03
NOISE_ABSOLUTE = 0.005
SUN_ZENITH_RANGE = (20.0, 75.0)
VIEW_ZENITH_RANGE = (0.0, 10.0)
RELATIVE_AZIMUTH_RANGE = (0.0, 180.0)
CAR_PER_CAB = 0.25
HELD_OUT_FRACTION = 0.2

# Applying the model to the WorldCereal cube (Hesbaye, Belgium).
WORLDCEREAL_INPUTS = "worldcereal_preprocessed_inputs.nc"
WORLDCEREAL_CROPLAND = "worldcereal_cropland_classification.nc"
WORLDCEREAL_BANDS: tuple[str, ...] = (
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B11",
    "B12",
)
WORLDCEREAL_LATITUDE = 50.63  # deg N, centre of the 1 km² cube (data/README.md)
WORLDCEREAL_NODATA = 65535
OVERPASS_SOLAR_HOUR = 10.5  # Sentinel-2 descending node: 10:30 local (mean) solar time
VIEW_ZENITH_NADIR = 5.0  # deg, a pixel near the middle of the 290 km swath
#: Sun azimuth at 10:30 in Belgium is ~150°; the MSI looks across track at ~100° or
#: ~280°, so relative azimuths are ~50° or ~130° depending on the orbit: take the middle.
RELATIVE_AZIMUTH_CONSTANT = 90.0
COMPOSITE_DAY = 15  # monthly composites: the sun of the middle of the month


# --------------------------------------------------------------------------- SRF


def srf_file(srf_dir: Path, band: str, sensor: str = "Sentinel-2A") -> Path:
    """``<srf_dir>/<sensor>/MSI/band_<N>`` for band B02 (2), B8A (8A), B11 (11)..."""
    number = band[1:].lstrip("0")
    return srf_dir / sensor / "MSI" / f"band_{number}"


def load_srf(
    srf_dir: Path, bands: Sequence[str] = S2_BANDS, sensor: str = "Sentinel-2A"
) -> FloatArray:
    """(bands, 2101) convolution matrix on 400..2500 nm; each row sums to 1.

    A file holds a header line, then "wavelength_nm response" rows; responses are
    interpolated onto the 1 nm grid (zero outside the tabulated range).
    """
    if sensor not in ("Sentinel-2A", "Sentinel-2B"):
        raise ValueError(f"unknown sensor {sensor!r}: Sentinel-2A or Sentinel-2B")
    rows = []
    for band in bands:
        path = srf_file(srf_dir, band, sensor)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no spectral response for {sensor} {band}")
        table = np.loadtxt(path, skiprows=1, dtype=np.float64, ndmin=2)
        order = np.argsort(table[:, 0])
        response = np.interp(
            WAVELENGTHS, table[order, 0], table[order, 1], left=0.0, right=0.0
        ).clip(min=0.0)
        total = response.sum()
        if total <= 0:
            raise ValueError(f"{path}: no response within 400..2500 nm")
        rows.append(response / total)
    return np.stack(rows)


def convolve(spectra: FloatArray, srf: FloatArray) -> FloatArray:
    """Band reflectances (..., bands) of 1 nm spectra (..., 2101)."""
    # Elementwise multiply-sum rather than BLAS: runs in forked workers (see simulate).
    return np.asarray((spectra[..., None, :] * srf).sum(axis=-1), dtype=np.float64)


# ------------------------------------------------------------------------ priors


@dataclass(frozen=True)
class Prior:
    """A truncated Gaussian, optionally co-distributed with LAI (ATBD)."""

    name: str
    unit: str
    low: float
    high: float
    mean: float
    std: float
    low_at_conv: float | None = None  # bounds at LAI = LAI_CONV
    high_at_conv: float | None = None
    prosail: str = ""  # the prosail argument it feeds

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "distribution": "truncated Gaussian",
            "min": self.low,
            "max": self.high,
            "mean": self.mean,
            "std": self.std,
        }
        if self.low_at_conv is not None:
            out["range_at_lai_conv"] = [self.low_at_conv, self.high_at_conv]
        return out


PRIORS: tuple[Prior, ...] = (
    Prior("LAI", "m²/m²", 0.0, LAI_MAX, 2.0, 3.0, prosail="lai"),
    Prior("ALA", "deg", 30.0, 80.0, 60.0, 30.0, 55.0, 65.0, prosail="lidfa"),
    Prior("hotspot", "-", 0.1, 0.5, 0.2, 0.5, 0.1, 0.5, prosail="hspot"),
    Prior("N", "-", 1.2, 1.8, 1.5, 0.3, 1.3, 1.8, prosail="n"),
    Prior("Cab", "µg/cm²", 20.0, CAB_MAX, 45.0, 30.0, 45.0, 90.0, prosail="cab"),
    Prior("Cm", "g/cm²", 0.003, 0.011, 0.005, 0.005, 0.005, 0.011, prosail="cm"),
    Prior("Cw_rel", "-", 0.6, 0.85, 0.75, 0.08, 0.70, 0.80),
    Prior("Cbrown", "-", 0.0, 2.0, 0.0, 0.3, 0.0, 0.2, prosail="cbrown"),
    Prior("psoil", "- (1 dry, 0 wet)", 0.0, 1.0, 0.25, 0.6, 0.0, 0.4, prosail="psoil"),
    Prior("rsoil", "- (brightness)", 0.5, 1.5, 1.0, 0.25, prosail="rsoil"),
)


def truncated_normal(
    rng: np.random.Generator, n: int, mean: float, std: float, low: float, high: float
) -> FloatArray:
    """n draws of N(mean, std) restricted to [low, high] (rejection sampling)."""
    out = np.empty(0)
    while len(out) < n:
        draw = rng.normal(mean, std, size=max(2 * (n - len(out)), 64))
        out = np.concatenate([out, draw[(draw >= low) & (draw <= high)]])
    return out[:n]


def sample_parameters(n: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    """PROSAIL inputs for n canopies and geometries, drawn from `PRIORS`."""
    p = {q.name: truncated_normal(rng, n, q.mean, q.std, q.low, q.high) for q in PRIORS}
    lai = p["LAI"]
    for q in PRIORS:
        if q.low_at_conv is None or q.high_at_conv is None:
            continue
        low = q.low + lai * (q.low_at_conv - q.low) / LAI_CONV
        high = q.high + lai * (q.high_at_conv - q.high) / LAI_CONV
        p[q.name] = low + (p[q.name] - q.low) * (high - low) / (q.high - q.low)
    p["Cw"] = p["Cm"] * p["Cw_rel"] / (1.0 - p["Cw_rel"])
    p["Car"] = CAR_PER_CAB * p["Cab"]
    p["sun_zenith"] = rng.uniform(*SUN_ZENITH_RANGE, size=n)
    p["view_zenith"] = rng.uniform(*VIEW_ZENITH_RANGE, size=n)
    p["relative_azimuth"] = rng.uniform(*RELATIVE_AZIMUTH_RANGE, size=n)
    return p


# ---------------------------------------------------------------------- targets


def nadir_projection(ala: float) -> float:
    """G(0): mean projection of unit leaf area onto the horizontal, for prosail's
    Campbell (ellipsoidal) leaf angle distribution with mean angle `ala` (deg)."""
    from prosail.FourSAIL import campbell  # type: ignore[import-untyped]

    lidf = np.asarray(campbell(float(ala), 18), dtype=np.float64)
    step = 90.0 / len(lidf)
    theta = np.radians((np.arange(len(lidf)) + 0.5) * step)
    return float((lidf * np.cos(theta)).sum())


def fcover(lai: npt.ArrayLike, ala: npt.ArrayLike) -> FloatArray:
    """1 - exp(-G(0) LAI): the fraction of ground hidden by leaves seen from nadir."""
    lai_a, ala_a = np.broadcast_arrays(np.asarray(lai, np.float64), np.asarray(ala, np.float64))
    g0 = np.vectorize(nadir_projection, otypes=[np.float64])(ala_a)
    return np.asarray(1.0 - np.exp(-g0 * lai_a), dtype=np.float64)


def targets_of(p: dict[str, FloatArray]) -> FloatArray:
    """(n, 3) LAI, CCC (g/m²), FCOVER of sampled parameters."""
    lai = p["LAI"]
    return np.stack([lai, p["Cab"] * lai / 100.0, fcover(lai, p["ALA"])], axis=1)


# ------------------------------------------------------------------- simulation


def _simulate_chunk(job: tuple[dict[str, FloatArray], FloatArray]) -> FloatArray:
    """Band reflectances (m, bands) of one chunk of parameters (runs in a worker)."""
    import prosail  # type: ignore[import-untyped]

    p, srf = job
    n = len(p["LAI"])
    out = np.empty((n, srf.shape[0]), dtype=np.float64)
    for i in range(n):
        spectrum = prosail.run_prosail(
            float(p["N"][i]),
            float(p["Cab"][i]),
            float(p["Car"][i]),
            float(p["Cbrown"][i]),
            float(p["Cw"][i]),
            float(p["Cm"][i]),
            float(p["LAI"][i]),
            float(p["ALA"][i]),
            float(p["hotspot"][i]),
            float(p["sun_zenith"][i]),
            float(p["view_zenith"][i]),
            float(p["relative_azimuth"][i]),
            prospect_version="5",
            typelidf=2,
            factor="SDR",
            rsoil=float(p["rsoil"][i]),
            psoil=float(p["psoil"][i]),
        )
        out[i] = convolve(np.asarray(spectrum, dtype=np.float64), srf)
    return out


def _chunks(p: dict[str, FloatArray], size: int) -> Iterator[dict[str, FloatArray]]:
    n = len(p["LAI"])
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in p.items()}


def simulate(
    n: int,
    seed: int,
    threads: int,
    srf_dir: Path,
    log: Log = print,
    *,
    sensor: str = "Sentinel-2A",
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """n noisy PROSAIL simulations: reflectance (n, 10) in `S2_BANDS` order, angles
    (n, 3) in degrees (`ANGLES`), targets (n, 3) (`VARIABLES`).

    The same seed gives the same data whatever `threads` (parameters and noise are drawn
    in this process; workers only run PROSAIL on fixed chunks).
    """
    if n < 1:
        raise ValueError("n must be positive")
    importlib.import_module("prosail")  # load (numba) once here, before forking workers

    srf = load_srf(srf_dir, S2_BANDS, sensor)
    rng = np.random.default_rng(seed)
    p = sample_parameters(n, rng)
    chunk = max(1, min(250, math.ceil(n / max(threads, 1) / 4)))
    jobs = [(c, srf) for c in _chunks(p, chunk)]
    started = time.perf_counter()
    if threads <= 1 or len(jobs) == 1:
        parts = _collect(map(_simulate_chunk, jobs), n, started, log)
    else:
        # fork: the workers need no torch and no re-import; PROSAIL is pure numpy.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(threads) as pool:
            parts = _collect(pool.imap(_simulate_chunk, jobs), n, started, log)
    clean = np.concatenate(parts)
    noisy = clean * (1.0 + rng.normal(0.0, NOISE_RELATIVE, clean.shape))
    noisy = (noisy + rng.normal(0.0, NOISE_ABSOLUTE, clean.shape)).clip(0.0, 1.0)
    angles = np.stack([p[a] for a in ANGLES], axis=1)
    return noisy, angles, targets_of(p)


def _collect(results: Iterator[FloatArray], n: int, started: float, log: Log) -> list[FloatArray]:
    parts: list[FloatArray] = []
    done, next_report = 0, 0.1
    for part in results:
        parts.append(part)
        done += len(part)
        if done / n >= next_report or done == n:
            log(f"prosail: {done}/{n} simulations ({time.perf_counter() - started:.0f} s)")
            next_report = math.floor(done / n * 10 + 1) / 10
    return parts


# ------------------------------------------------------------------------ model


class BiophysNet(nn.Module):
    """(N, 10) reflectance + (N, 3) angles (deg) -> (N, 3) [LAI, CCC, FCOVER].

    Selects `MODEL_BANDS`, appends the cosines of the angles, standardises with the
    training statistics (buffers), runs a tanh MLP and un-standardises; in eval mode the
    outputs are clamped to their physical ranges.
    """

    if TYPE_CHECKING:  # buffers, for mypy (TorchScript cannot read these annotations)
        band_index: torch.Tensor
        x_mean: torch.Tensor
        x_std: torch.Tensor
        y_mean: torch.Tensor
        y_std: torch.Tensor
        y_min: torch.Tensor
        y_max: torch.Tensor

    def __init__(self, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        features = len(MODEL_BANDS) + len(ANGLES)
        self.register_buffer("band_index", torch.tensor(MODEL_BAND_INDEX, dtype=torch.long))
        self.register_buffer("x_mean", torch.zeros(features))
        self.register_buffer("x_std", torch.ones(features))
        self.register_buffer("y_mean", torch.zeros(len(VARIABLES)))
        self.register_buffer("y_std", torch.ones(len(VARIABLES)))
        self.register_buffer("y_min", torch.tensor(OUTPUT_MIN))
        self.register_buffer("y_max", torch.tensor(OUTPUT_MAX))
        layers: list[nn.Module] = []
        width = features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        layers.append(nn.Linear(width, len(VARIABLES)))
        self.mlp = nn.Sequential(*layers)

    def features(self, reflectance: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Unstandardised network inputs (N, 11): 8 bands, cos of the 3 angles."""
        bands = reflectance.index_select(1, self.band_index)
        return torch.cat([bands, torch.cos(torch.deg2rad(angles))], dim=1)

    def set_normalisation(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Buffers from training features (N, 11) and targets (N, 3)."""
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp(min=1e-6))
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(y.std(0).clamp(min=1e-6))

    def forward(self, reflectance: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        x = (self.features(reflectance.float(), angles.float()) - self.x_mean) / self.x_std
        y: torch.Tensor = self.mlp(x) * self.y_std + self.y_mean
        if self.training:
            return y  # no clamp while training: it would kill the gradient at the bounds
        return torch.minimum(torch.maximum(y, self.y_min), self.y_max)


# ----------------------------------------------------------------- WorldCereal


def solar_angles(
    day: date, latitude: float, solar_hour: float = OVERPASS_SOLAR_HOUR
) -> tuple[float, float]:
    """Sun zenith and azimuth from north (deg) at local solar time `solar_hour`;
    declination after Spencer (1971), as in NOAA's low-precision formulas (≈ 0.5°)."""
    gamma = 2.0 * math.pi * (day.timetuple().tm_yday - 1) / 365.0
    declination = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    hour_angle = math.radians(15.0 * (solar_hour - 12.0))
    phi = math.radians(latitude)
    cos_zenith = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(
        declination
    ) * math.cos(hour_angle)
    zenith = math.acos(max(-1.0, min(1.0, cos_zenith)))
    cos_azimuth = (math.sin(declination) - math.sin(phi) * cos_zenith) / (
        math.cos(phi) * math.sin(zenith)
    )
    azimuth = math.degrees(math.acos(max(-1.0, min(1.0, cos_azimuth))))
    if hour_angle > 0:  # afternoon: west of south
        azimuth = 360.0 - azimuth
    return math.degrees(zenith), azimuth


def solar_zenith(day: date, latitude: float, solar_hour: float = OVERPASS_SOLAR_HOUR) -> float:
    """Sun zenith (deg) at local solar time `solar_hour`."""
    return solar_angles(day, latitude, solar_hour)[0]


@dataclass(frozen=True)
class WorldCerealCube:
    reflectance: npt.NDArray[np.float32]  # (months, pixels, 10) in S2_BANDS order, NaN = none
    valid: npt.NDArray[np.bool_]  # (months, pixels)
    months: list[date]
    cropland: npt.NDArray[np.bool_]  # (pixels,)


def read_worldcereal(worldcereal_dir: Path) -> WorldCerealCube:
    """The cube's monthly reflectances as model inputs, and the reference cropland map.

    B8A, absent from the cube, is filled with B08 (the model ignores it). A pixel-month is
    valid when none of its nine bands is no data.
    """
    cube = read_cube(worldcereal_dir / WORLDCEREAL_INPUTS)
    cropland = read_cropland(worldcereal_dir / WORLDCEREAL_CROPLAND)
    dn = {b: cube.dn[b] for b in WORLDCEREAL_BANDS}
    t, rows, cols = dn["B02"].shape
    stack = np.stack([dn[b] for b in WORLDCEREAL_BANDS], axis=-1).reshape(t, rows * cols, -1)
    valid = (stack != WORLDCEREAL_NODATA).all(axis=-1)
    reflectance = stack.astype(np.float32) / 10000.0
    reflectance[~valid] = np.nan
    b08 = WORLDCEREAL_BANDS.index("B08")
    order = [WORLDCEREAL_BANDS.index(b) if b != "B8A" else b08 for b in S2_BANDS]
    months = [d.date() for d in cube.dates]
    return WorldCerealCube(reflectance[..., order], valid, months, cropland.reshape(-1))


def worldcereal_monthly(model: nn.Module, worldcereal_dir: Path) -> dict[str, Any]:
    """Per month: median LAI, CCC, FCOVER over valid cropland and non-cropland pixels."""
    cube = read_worldcereal(worldcereal_dir)
    table: dict[str, Any] = {}
    for m, month in enumerate(cube.months):
        key = month.strftime("%Y-%m")
        valid = cube.valid[m]
        sza = solar_zenith(month.replace(day=COMPOSITE_DAY), WORLDCEREAL_LATITUDE)
        row: dict[str, Any] = {"sun_zenith": round(sza, 1), "valid_pixels": int(valid.sum())}
        if valid.any():
            refl = torch.from_numpy(cube.reflectance[m][valid])
            angles = torch.tensor([[sza, VIEW_ZENITH_NADIR, RELATIVE_AZIMUTH_CONSTANT]]).expand(
                len(refl), 3
            )
            out = predict(model, [refl, angles], batch_size=4096).numpy()
            red, nir = refl[:, S2_BANDS.index("B04")], refl[:, S2_BANDS.index("B08")]
            ndvi = ((nir - red) / (nir + red).clamp(min=1e-6)).numpy()
            crop = cube.cropland[valid]
            for name, mask in (("cropland", crop), ("other", ~crop)):
                if mask.any():
                    med = np.median(out[mask], axis=0)
                    row[name] = {
                        "pixels": int(mask.sum()),
                        **{v: round(float(med[j]), 3) for j, v in enumerate(VARIABLES)},
                        "NDVI": round(float(np.median(ndvi[mask])), 3),
                    }
        table[key] = row
    return table


def describe_seasonality(table: dict[str, Any]) -> list[str]:
    """Plain statements on the monthly medians (for the card's notes): per class, the
    winter (Nov..Mar) level, the peak, and the lowest month after the peak."""
    notes = []
    for name in ("cropland", "other"):
        series = {k: float(v[name]["LAI"]) for k, v in table.items() if name in v}
        if len(series) < 3:
            continue
        peak = max(series, key=lambda k: series[k])
        winter = [v for k, v in series.items() if int(k[5:]) in (11, 12, 1, 2, 3)]
        after = [v for k, v in series.items() if k > peak]
        text = ", ".join(f"{k} {v:.2f}" for k, v in series.items())
        rises = bool(winter) and series[peak] >= 1.5 * max(winter)
        drops = bool(after) and min(after) <= 0.5 * series[peak]
        if rises and drops:
            verdict = "a crop cycle: low in winter, spring/summer peak, drop after harvest"
        elif rises:
            verdict = (
                "low in winter and a spring/summer peak, but no harvest drop: green after "
                "the peak (grassland, or crops followed by catch crops)"
            )
        else:
            verdict = "no clear seasonal cycle"
        level = f"{np.mean(winter):.2f}" if winter else "n/a"
        tail = f", lowest after it {min(after):.2f}" if after else ""
        notes.append(
            f"WorldCereal {name} pixels, median LAI by month: {text}. Winter (Nov-Mar) "
            f"{level}, peak {peak} {series[peak]:.2f}{tail}: {verdict}."
        )
    return notes


# --------------------------------------------------------------------- training


def train_biophys(
    out_dir: Path,
    *,
    samples: int = 20000,
    epochs: int = 60,
    seed: int = 0,
    threads: int = 2,
    srf_dir: Path,
    worldcereal_dir: Path,
    log: Log = print,
    sensor: str = "Sentinel-2A",
    hidden: int = 64,
    batch_size: int = 256,
    lr: float = 3e-3,
) -> ModelCard:
    """Simulate, train, evaluate on held-out simulations, apply to the WorldCereal cube,
    save model.pt + card into `out_dir`; returns the card."""
    started = time.perf_counter()
    rng = seed_everything(seed, threads)
    log(f"biophys: simulating {samples} PROSAIL canopies with {threads} workers")
    reflectance, angles, targets = simulate(samples, seed, threads, srf_dir, log, sensor=sensor)
    simulation_seconds = round(time.perf_counter() - started, 1)

    order = rng.permutation(samples)
    n_test = max(1, round(samples * HELD_OUT_FRACTION))
    test, train = order[:n_test], order[n_test:]
    r = torch.from_numpy(reflectance.astype(np.float32))
    a = torch.from_numpy(angles.astype(np.float32))
    y = torch.from_numpy(targets.astype(np.float32))

    model = BiophysNet(hidden=hidden)
    with torch.no_grad():
        model.set_normalisation(model.features(r[train], a[train]), y[train])
    y_std = model.y_std.clone()

    def batches(g: np.random.Generator) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        for idx in minibatches(len(train), batch_size, g):
            sel = torch.from_numpy(train[idx])
            yield [r[sel], a[sel]], y[sel]

    def loss_fn(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        return (((predicted - truth) / y_std) ** 2).mean()

    # An 11-64-64-3 MLP gains nothing from intra-op threads (their overhead dominates);
    # the `threads` go to the PROSAIL workers.
    torch.set_num_threads(1)
    history = fit(model, batches, loss_fn, epochs=epochs, rng=rng, lr=lr, log=log, name="biophys")
    torch.set_num_threads(threads)
    held_out = predict(model, [r[test], a[test]], batch_size=4096).numpy()
    report = regression_report(targets[test], held_out, VARIABLES)
    for v in VARIABLES:
        s = report[v]
        log(f"biophys: held-out {v}: RMSE {s['rmse']}, bias {s['bias']}, R² {s['r2']}")

    monthly = worldcereal_monthly(model, worldcereal_dir)
    seasonality = describe_seasonality(monthly)
    for line in seasonality:
        log(f"biophys: {line}")

    card = ModelCard(
        name="biophys_prosail",
        version="1",
        max_batch_size=MAX_BATCH,
        task="regression",
        summary=(
            "LAI, canopy chlorophyll content and FCOVER from Sentinel-2 surface reflectance "
            "and sun/view angles: an MLP trained on noisy PROSAIL (PROSPECT-5 + 4SAIL) "
            f"simulations convolved with the {sensor} spectral responses, with priors "
            "after the S2 Toolbox ATBD (Weiss & Baret 2016)."
        ),
        inputs=[
            TensorSpec(
                "reflectance",
                [len(S2_BANDS)],
                "surface reflectance 0..1 of " + ", ".join(S2_BANDS) + " (in this order); "
                "B02 and B8A are accepted but not used",
            ),
            TensorSpec(
                "angles",
                [len(ANGLES)],
                "degrees: sun zenith, view zenith, relative azimuth (sun - view)",
            ),
        ],
        outputs=[
            TensorSpec("variables", [len(VARIABLES)], "LAI (m²/m²), CCC (g/m²), FCOVER (0–1)")
        ],
        classes=[],
        data={
            "source": "PROSAIL simulations (python prosail 2.0.5: PROSPECT-5, 4SAIL, SDR)",
            "samples": samples,
            "seed": seed,
            "sensor": f"{sensor} MSI, ESA S2-SRF_COPE-GSEG-EOPG-TN-15-0007 v3.0 (data/pyrsr)",
            "bands_simulated": list(S2_BANDS),
            "bands_used": list(MODEL_BANDS),
            "noise": (
                f"R*(1+N(0,{NOISE_RELATIVE})) + N(0,{NOISE_ABSOLUTE}) per band, clipped to 0..1"
            ),
            "priors": {q.name: q.describe() for q in PRIORS},
            "derived": (
                f"Cw = Cm*Cw_rel/(1-Cw_rel); Car = {CAR_PER_CAB}*Cab; ant = 0; "
                f"co-distribution with LAI, LAI_conv = {LAI_CONV}; typelidf 2 (Campbell)"
            ),
            "geometry": {
                "sun_zenith": list(SUN_ZENITH_RANGE),
                "view_zenith": list(VIEW_ZENITH_RANGE),
                "relative_azimuth": list(RELATIVE_AZIMUTH_RANGE),
                "distribution": "uniform",
            },
            "targets": (
                "LAI; CCC = Cab*LAI/100 (g/m²); FCOVER = 1 - exp(-G(0)*LAI), G(0) from the "
                "Campbell leaf angle distribution of ALA"
            ),
            "application": (
                "WorldCereal cube (data/worldcereal, 100x100 px, Hesbaye, 2020-11..2021-10): "
                f"sun zenith at {OVERPASS_SOLAR_HOUR} h local solar time on day "
                f"{COMPOSITE_DAY} of each month at {WORLDCEREAL_LATITUDE}°N, view zenith "
                f"{VIEW_ZENITH_NADIR}°, relative azimuth {RELATIVE_AZIMUTH_CONSTANT}°; "
                "cropland = the reference map read as in revisit_models.worldcereal.read_cropland"
            ),
        },
        split={
            "method": f"random {1 - HELD_OUT_FRACTION:.0%}/{HELD_OUT_FRACTION:.0%} of simulations",
            "train": len(train),
            "held_out": len(test),
        },
        metrics={
            "held_out_simulations": report,
            "worldcereal_monthly_median": monthly,
        },
        training={
            **history,
            **training_environment(threads),
            "architecture": f"MLP 11 -> {hidden} -> {hidden} -> 3, tanh",
            "batch_size": batch_size,
            "torch_threads_during_fit": 1,
            "loss": "MSE of standardised outputs",
            "simulation_seconds": simulation_seconds,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        input_statistics={
            "reflectance": {
                b: {
                    "mean": round(float(reflectance[train, i].mean()), 5),
                    "std": round(float(reflectance[train, i].std()), 5),
                }
                for i, b in enumerate(S2_BANDS)
            },
            "angles": {
                name: {
                    "mean": round(float(angles[train, i].mean()), 3),
                    "std": round(float(angles[train, i].std()), 3),
                }
                for i, name in enumerate(ANGLES)
            },
            "source": "simulated training reflectances (PROSAIL priors, with noise)",
        },
        reproduce="revisit train biophys --out data/models/biophys_prosail/1",
        notes=[
            "PROSAIL is a 1-D turbid medium: no clumping, rows or crowns; row crops early in "
            "the season and orchards break its assumptions and LAI is then an effective LAI.",
            "B8A is missing from the WorldCereal archive: the model uses B08 (broader, "
            "842 nm) instead of the ATBD's B8A, and ignores B8A and B02 (aerosol-sensitive) "
            "inputs.",
            "Priors are the generic global ones of the S2 Toolbox ATBD (LAI capped at 8), not "
            "tuned to a site or crop; CCC and FCOVER inherit LAI's errors.",
            f"Trained with {sensor} responses. On PROSAIL spectra, S2A and S2B bands differ by "
            "up to ~4 % (B05, B06; <= 0.013 reflectance), about the size of the noise model; "
            "train with sensor='Sentinel-2B' for a dedicated S2B model.",
            "Cropland is WorldCereal's reference map, whose class 0 is cropland (it agrees "
            "at 97 % with the GeoTIFF band named cropland_classification; see "
            "revisit_models.worldcereal.read_cropland).",
            "The WorldCereal inputs are monthly composites (2020-12 and 2021-01 empty); "
            "angles are nominal (see data.application), not per acquisition.",
            *seasonality,
        ],
    )
    card.training["total_seconds"] = round(time.perf_counter() - started, 1)
    save_model(out_dir, model, card)
    log(f"biophys: wrote {out_dir} ({card.training['total_seconds']} s)")
    return card
