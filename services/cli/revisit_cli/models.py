"""`revisit models export`: the Triton model repository, reproducible from shipped weights."""

from __future__ import annotations

from pathlib import Path

from revisit_cli.stack import REPO_ROOT

LCZ_WEIGHTS = REPO_ROOT / "data" / "so2sat-lcz" / "sen2lcz_drop_32_weights.best.hdf5"
LCZ_MODEL = "lcz_sen2lcz_drop"


def lcz_torchscript(repository: Path) -> Path:
    return repository / LCZ_MODEL / "1" / "model.pt"


def export_models(repository: Path, force: bool = False) -> list[Path]:
    """Write every model file of the repository that is missing (or all, with force)."""
    from revisit_models.lcz import export_torchscript  # torch is slow to import

    target = lcz_torchscript(repository)
    if target.exists() and not force:
        return []
    return [export_torchscript(LCZ_WEIGHTS, target)]
