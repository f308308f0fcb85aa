"""Every trained model answers on the real tritonserver exactly as its TorchScript file
does in process, on real inputs (WorldCereal parcels and pixels, the eo-learn series)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from revisit_cli.models import TRAINED
from revisit_cli.stack import StackConfig
from revisit_common.cards import ModelCard, load_card
from revisit_common.errors import PoisonError
from revisit_inference.triton import TritonModel
from tests.model_inputs import parcel_inputs, real_inputs

pytestmark = pytest.mark.integration


def _trained() -> list[Path]:
    return sorted(p.parent for p in TRAINED.glob("*/*/card.json"))


def test_every_trained_model_is_in_the_repository(stack: StackConfig) -> None:
    names = {load_card(p).name for p in _trained()}
    assert {"psetae_s2", "psetae_s1s2", "landcover_tae", "biophys_prosail"} <= names
    for name in names:
        assert (stack.triton_model_repository / name / "config.pbtxt").exists()


@pytest.mark.parametrize("model_dir", _trained(), ids=lambda p: f"{p.parent.name}-v{p.name}")
def test_triton_equals_torchscript_on_real_inputs(
    stack: StackConfig, worldcereal_datasets: Path, model_dir: Path
) -> None:
    card: ModelCard = load_card(model_dir)
    local = torch.jit.load(str(model_dir / "model.pt")).eval()
    remote = TritonModel.for_card(stack.triton_grpc_url, card)
    output = card.outputs[0].name
    for request in real_inputs(card.name, worldcereal_datasets):
        assert list(request) == [t.name for t in card.inputs]
        served, version = remote.infer(request, output)
        with torch.inference_mode():
            expected = local(*[torch.from_numpy(request[t.name]) for t in card.inputs]).numpy()
        assert version == card.version
        assert (
            served.shape
            == expected.shape
            == (len(next(iter(request.values()))), *card.outputs[0].dims)
        )
        assert np.abs(served - expected).max() < 1e-5
        if card.task == "classification":
            assert (served.argmax(1) == expected.argmax(1)).all()


def test_a_pixel_set_with_wrong_bands_is_rejected(
    stack: StackConfig, worldcereal_datasets: Path
) -> None:
    request = parcel_inputs(worldcereal_datasets / "points", False, 400.0, count=2)
    request["pixels"] = request["pixels"][:, :, :9]  # 9 bands instead of 10
    with pytest.raises(PoisonError, match="rejected the input"):
        TritonModel(stack.triton_grpc_url, "psetae_s2").infer(request, "probabilities")
