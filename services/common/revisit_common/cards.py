"""Model cards: what a trained model is, machine-readable (`card.json`).

Written by the training commands (`revisit_models.artefact.save_model`), copied into
the Triton model repository by `revisit models build`, and read by the inference
service (class names, training statistics for drift monitoring). Plain Python: no torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"
MODEL_FILE = "model.pt"
TRITON_TYPES = {"FP32", "INT32", "INT64", "BOOL"}
#: A feature whose training std (`ModelCard.input_statistics`) is at or below this was
#: constant in training: the models hold it at its training value, and the drift monitor
#: gives it no shift.
CONSTANT_STD = 1e-6


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model, per sample (the batch axis is implied).

    A dimension of -1 varies between requests (the dates of a season): Triton's Python
    backend of the project pads such axes with zeros, so the matching mask must treat
    zeros as "not observed".
    """

    name: str
    dims: list[int]
    doc: str
    dtype: str = "FP32"

    def __post_init__(self) -> None:
        if self.dtype not in TRITON_TYPES:
            raise ValueError(f"{self.name}: dtype {self.dtype} not in {sorted(TRITON_TYPES)}")


@dataclass
class ModelCard:
    name: str
    version: str
    task: str  # "classification" or "regression"
    summary: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    classes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    input_statistics: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""
    notes: list[str] = field(default_factory=list)
    max_batch_size: int = 256
    created: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        raw = json.loads(text)
        raw["inputs"] = [TensorSpec(**t) for t in raw["inputs"]]
        raw["outputs"] = [TensorSpec(**t) for t in raw["outputs"]]
        return cls(**raw)


def load_card(model_dir: Path) -> ModelCard:
    path = model_dir / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {model_dir} a trained model directory?")
    return ModelCard.from_json(path.read_text())
