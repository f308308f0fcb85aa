"""`revisit models build`: Triton configs from model cards, versions as directories."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from revisit_cli.models import BACKEND, TRAINED
from revisit_cli.stack import StackConfig
from revisit_common.cards import ModelCard, TensorSpec, load_card
from revisit_models.artefact import save_model
from revisit_models.repository import (
    build_repository,
    config_pbtxt,
    install_model,
    trained_models,
)


class _Mean(nn.Module):
    def forward(self, series: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = valid.unsqueeze(-1)
        mean = (series * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return torch.softmax(mean, dim=-1)


def _card(version: str = "1") -> ModelCard:
    return ModelCard(
        name="toy_series",
        version=version,
        task="classification",
        summary="Mean of the valid dates, as probabilities.",
        inputs=[
            TensorSpec("series", [-1, 3], "T dates × 3 values"),
            TensorSpec("valid", [-1], "1 for a real date"),
        ],
        outputs=[TensorSpec("probabilities", [3], "3 classes")],
        classes=["a", "b", "c"],
        max_batch_size=64,
    )


def test_config_lists_inputs_outputs_batching_and_instances() -> None:
    text = config_pbtxt(_card(), "cpu")
    assert 'name: "toy_series"' in text and "max_batch_size: 64" in text
    assert re.search(r'name: "series"\s+data_type: TYPE_FP32\s+dims: \[ -1, 3 \]', text)
    assert re.search(r'name: "probabilities"\s+data_type: TYPE_FP32\s+dims: \[ 3 \]', text)
    assert "dynamic_batching" in text and "kind: KIND_CPU, count: 2" in text
    assert "kind: KIND_GPU, count: 1" in config_pbtxt(_card(), "gpu")
    assert "kind: KIND_GPU, count: 3" in config_pbtxt(_card(), "gpu", instances=3)
    with pytest.raises(ValueError, match="instance kind"):
        config_pbtxt(_card(), "tpu")
    with pytest.raises(ValueError, match="at least 1"):
        config_pbtxt(_card(), "cpu", instances=0)


def test_versions_are_directories(tmp_path: Path) -> None:
    trained, repository = tmp_path / "trained", tmp_path / "repository"
    for version in ("1", "2"):
        save_model(trained / "toy_series" / version, _Mean(), _card(version))
    built = [install_model(d, repository, BACKEND) for d in trained_models(trained)]
    assert [(b.name, b.version) for b in built] == [("toy_series", "1"), ("toy_series", "2")]
    for version in ("1", "2"):
        files = sorted(p.name for p in (repository / "toy_series" / version).iterdir())
        assert files == ["card.json", "model.pt", "model.py"]
        assert load_card(repository / "toy_series" / version).version == version
    config = (repository / "toy_series" / "config.pbtxt").read_text()
    assert "version_policy: { latest: { num_versions: 2 } }" in config
    # a second build writes nothing: nothing changed
    again = [install_model(d, repository, BACKEND) for d in trained_models(trained)]
    assert all(not b.written for b in again)


def test_a_version_withdrawn_from_the_trained_models_leaves_the_repository(
    tmp_path: Path,
) -> None:
    trained, repository = tmp_path / "trained", tmp_path / "repository"
    for version in ("1", "2"):
        save_model(trained / "toy_series" / version, _Mean(), _card(version))
    build_repository(repository, [trained], BACKEND)
    shutil.rmtree(trained / "toy_series" / "1")  # withdrawn: version 2 replaces it
    built = build_repository(repository, [trained], BACKEND)
    assert sorted(p.name for p in (repository / "toy_series").iterdir()) == ["2", "config.pbtxt"]
    assert ("toy_series", "1") in [(b.name, b.version) for b in built if b.written]
    config = (repository / "toy_series" / "config.pbtxt").read_text()
    assert "version_policy: { latest: { num_versions: 1 } }" in config


def test_a_card_in_the_wrong_version_directory_is_refused(tmp_path: Path) -> None:
    save_model(tmp_path / "toy_series" / "3", _Mean(), _card("1"))
    with pytest.raises(ValueError, match="card version 1"):
        install_model(tmp_path / "toy_series" / "3", tmp_path / "repository", BACKEND)


def test_the_project_repository_holds_every_model() -> None:
    from revisit_cli.models import build_models

    repository = StackConfig().triton_model_repository
    build_models(repository)
    names = {p.parent.name for p in repository.glob("*/config.pbtxt")}
    assert "lcz_sen2lcz_drop" in names
    for model_dir in trained_models(TRAINED):
        card = load_card(model_dir)
        assert card.name in names
        assert (repository / card.name / card.version / "model.pt").exists()
        config = (repository / card.name / "config.pbtxt").read_text()
        assert config == config_pbtxt(card, "cpu", len(list(model_dir.parent.iterdir())))
