"""Fixtures shared by every test: real sample data from the repository, never downloaded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from revisit_cli.demo_data import build_catalog
from revisit_cli.stack import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
LCZ_WEIGHTS = REPO_ROOT / "data" / "so2sat-lcz" / "sen2lcz_drop_32_weights.best.hdf5"
AOI_FILE = REPO_ROOT / "infra" / "demo" / "aoi.geojson"


@pytest.fixture(scope="session")
def lcz_parity() -> dict[str, np.ndarray]:
    """Real patches of the WorldCereal cube and the original Keras model's outputs."""
    with np.load(FIXTURES / "lcz_parity.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def shared_tmp() -> Iterator[Path]:
    """A session temp dir that other system users (postgres) can traverse."""
    path = Path(tempfile.mkdtemp(prefix="revisit-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_catalog(shared_tmp: Path) -> Path:
    """The demo's static STAC catalog (COGs of the 12 real monthly composites)."""
    return build_catalog(shared_tmp / "demo")
