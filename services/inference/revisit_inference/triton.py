"""The LCZ model on Triton Inference Server, through tritonclient (gRPC)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from revisit_common.errors import PoisonError, TransientError

LCZ_INPUT = "patches"
LCZ_OUTPUT = "probabilities"


class Classifier(Protocol):
    """Class probabilities for a batch of inputs, and which model produced them."""

    model_name: str

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        """Probabilities (N, classes) and the model version that computed them."""
        ...


class TritonClassifier:
    """Calls one Triton model; requests are cut to the model's max batch size."""

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str = "",
        max_batch: int = 256,
        timeout_s: float = 30.0,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.client = grpcclient.InferenceServerClient(url)

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        parts, version = [], self.model_version
        for start in range(0, len(batch), self.max_batch):
            chunk = np.ascontiguousarray(batch[start : start + self.max_batch], dtype=np.float32)
            tensor = grpcclient.InferInput(LCZ_INPUT, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            try:
                result = self.client.infer(
                    self.model_name,
                    [tensor],
                    model_version=self.model_version,
                    outputs=[grpcclient.InferRequestedOutput(LCZ_OUTPUT)],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as exc:
                raise classify(exc, self.model_name) from exc
            probabilities = result.as_numpy(LCZ_OUTPUT)
            if probabilities is None:
                raise PoisonError(f"{self.model_name} returned no {LCZ_OUTPUT!r} output")
            parts.append(probabilities.astype(np.float32))
            version = result.get_response().model_version or version
        return np.concatenate(parts), version


def classify(exc: InferenceServerException, model: str) -> Exception:
    """Bad input is poison; anything else (server down, model loading, timeout) passes."""
    status = str(exc.status() or "")
    if "INVALID_ARGUMENT" in status:
        return PoisonError(f"{model} rejected the input: {exc.message()}")
    return TransientError(f"{model} unavailable ({status or 'no status'}): {exc.message()}")
