"""A model the service calls, with its card, and what one prediction step returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from revisit_common.cards import ModelCard
from revisit_inference.drift import Reference


class NamedModel(Protocol):
    """A model called with named inputs (Triton, or TorchScript in tests)."""

    model_name: str

    def infer(
        self, inputs: dict[str, npt.NDArray[np.float32]], output: str
    ) -> tuple[npt.NDArray[np.float32], str]: ...


@dataclass(frozen=True)
class ServedModel:
    """A model and its card (class names, training statistics, max batch)."""

    model: NamedModel
    card: ModelCard

    @property
    def name(self) -> str:
        return self.model.model_name

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @property
    def statistics(self) -> dict[str, Any]:
        return self.card.input_statistics


@dataclass(frozen=True)
class Predicted:
    """The model's outputs for a batch, and this pass's inputs as the drift monitor
    compares them with the training data (N, F) in the features of `reference`."""

    outputs: npt.NDArray[np.float32]
    inputs: npt.NDArray[np.float32]
    reference: Reference
