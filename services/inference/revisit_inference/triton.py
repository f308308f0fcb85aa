"""Models on Triton Inference Server, through tritonclient (gRPC)."""

from __future__ import annotations

from collections.abc import Mapping
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


class TritonModel:
    """Calls one Triton model with named FP32 tensors; cuts requests to the max batch."""

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

    def infer(
        self, inputs: Mapping[str, npt.NDArray[np.float32]], output: str
    ) -> tuple[npt.NDArray[np.float32], str]:
        """`output` for the batch of `inputs` (same first axis), and the answering version."""
        sizes = {len(array) for array in inputs.values()}
        if len(sizes) != 1:
            raise PoisonError(f"{self.model_name}: inputs of different batch sizes {sorted(sizes)}")
        parts, version = [], self.model_version
        for start in range(0, sizes.pop(), self.max_batch):
            tensors = []
            for name, array in inputs.items():
                chunk = np.ascontiguousarray(array[start : start + self.max_batch], np.float32)
                tensor = grpcclient.InferInput(name, list(chunk.shape), "FP32")
                tensor.set_data_from_numpy(chunk)
                tensors.append(tensor)
            try:
                result = self.client.infer(
                    self.model_name,
                    tensors,
                    model_version=self.model_version,
                    outputs=[grpcclient.InferRequestedOutput(output)],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as exc:
                raise classify(exc, self.model_name) from exc
            values = result.as_numpy(output)
            if values is None:
                raise PoisonError(f"{self.model_name} returned no {output!r} output")
            parts.append(values.astype(np.float32))
            version = result.get_response().model_version or version
        return np.concatenate(parts), version


class TritonClassifier(TritonModel):
    """The LCZ model: patches in, class probabilities out."""

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        return self.infer({LCZ_INPUT: batch}, LCZ_OUTPUT)


def classify(exc: InferenceServerException, model: str) -> Exception:
    """Bad input is poison; anything else (server down, model loading, timeout) passes."""
    status = str(exc.status() or "")
    if "INVALID_ARGUMENT" in status:
        return PoisonError(f"{model} rejected the input: {exc.message()}")
    return TransientError(f"{model} unavailable ({status or 'no status'}): {exc.message()}")
