"""The torch port of Sen2LCZ-Drop reproduces the original Keras model on real patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from revisit_models.lcz import (
    LCZ_REFLECTANCE_DIVISOR,
    Sen2LczDrop,
    export_torchscript,
    load_keras_weights,
)
from tests.conftest import LCZ_WEIGHTS


def _inputs(lcz_parity: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(lcz_parity["dn"].astype(np.float32) / LCZ_REFLECTANCE_DIVISOR)


def test_port_matches_keras_on_real_patches(lcz_parity: dict[str, np.ndarray]) -> None:
    model = load_keras_weights(Sen2LczDrop(), LCZ_WEIGHTS)
    with torch.no_grad():
        probabilities = model(_inputs(lcz_parity)).numpy()
    keras = lcz_parity["keras_probabilities"]
    assert probabilities.shape == keras.shape == (90, 17)
    assert np.abs(probabilities - keras).max() < 1e-4
    assert (probabilities.argmax(1) == keras.argmax(1)).all()


def test_torchscript_export_gives_the_same_outputs(
    lcz_parity: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = export_torchscript(LCZ_WEIGHTS, tmp_path / "model.pt")
    scripted = torch.jit.load(str(path)).eval()
    eager = load_keras_weights(Sen2LczDrop(), LCZ_WEIGHTS)
    x = _inputs(lcz_parity)[:16]
    with torch.no_grad():
        assert torch.allclose(scripted(x), eager(x), atol=1e-6)


def test_wrong_weight_file_is_a_clear_error(tmp_path: Path) -> None:
    import h5py
    import pytest

    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ValueError, match="Sen2LCZ-Drop"):
        load_keras_weights(Sen2LczDrop(), empty)
