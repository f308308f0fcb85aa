"""Models on Triton Inference Server, through tritonclient (gRPC)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from prometheus_client import Gauge, Histogram
from tritonclient.utils import InferenceServerException

from revisit_common.cards import ModelCard
from revisit_common.errors import PoisonError, TransientError
from revisit_common.metrics import LATENCY_BUCKETS

LCZ_INPUT = "patches"
LCZ_OUTPUT = "probabilities"


class Classifier(Protocol):
    """Class probabilities for a batch of inputs, and which model produced them."""

    model_name: str

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        """Probabilities (N, classes) and the model version that computed them."""
        ...


CIRCUIT_OPEN = Gauge(
    "revisit_inference_triton_circuit_open",
    "1 while calls to a Triton model are suspended after repeated failures.",
    ["model"],
)

REQUEST_SECONDS = Histogram(
    "revisit_inference_triton_request_duration_seconds",
    "Time of one Triton request seen from the client (encoding, network, queue, compute), "
    "answered or failed.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, *LATENCY_BUCKETS),
)
REQUEST_ITEMS = Histogram(
    "revisit_inference_triton_request_items",
    "Items (patches, parcels, pixels) in one Triton request: the batch size sent.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536),
)


class CircuitBreaker:
    """After `threshold` failures in a row, refuse calls for `cooldown_s` (fail fast, so
    the service's retry loop waits without hammering a server that is down), then let
    one call through: its success closes the circuit, its failure opens it again."""

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.threshold, self.cooldown_s, self.clock = name, threshold, cooldown_s, clock
        self.failures, self.open_until = 0, 0.0
        self._lock = Lock()
        CIRCUIT_OPEN.labels(name).set(0)

    def before(self) -> None:
        wait = self.open_until - self.clock()
        if wait > 0:
            raise TransientError(
                f"{self.name}: circuit open after {self.failures} failures in a row; "
                f"next try in {wait:.0f} s"
            )

    def failed(self) -> None:
        with self._lock:  # requests of one call fail from several threads
            self.failures += 1
            if self.failures >= self.threshold:
                self.open_until = self.clock() + self.cooldown_s
                CIRCUIT_OPEN.labels(self.name).set(1)

    def succeeded(self) -> None:
        self.failures, self.open_until = 0, 0.0
        CIRCUIT_OPEN.labels(self.name).set(0)


class TritonModel:
    """Calls one Triton model with named FP32 tensors; cuts requests to the max batch and
    keeps up to `concurrency` of them in flight.

    Bad input is a PoisonError; an unreachable or failing server a TransientError (the
    service retries with backoff and commits nothing meanwhile), and after repeated
    failures the circuit breaker answers TransientError without calling.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str = "",
        max_batch: int = 256,
        timeout_s: float = 30.0,
        breaker: CircuitBreaker | None = None,
        concurrency: int = 4,
    ) -> None:
        self.model_name = model_name
        self.concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None
        self.model_version = model_version
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.client = grpcclient.InferenceServerClient(url)
        self.breaker = breaker or CircuitBreaker(model_name)

    @classmethod
    def for_card(cls, url: str, card: ModelCard, **options: Any) -> TritonModel:
        """The client of the model a card describes: its name, and requests cut at the
        max batch its Triton configuration was written with (not the default 256);
        `options` are the other arguments of the constructor."""
        return cls(url, card.name, max_batch=card.max_batch_size, **options)

    def infer(
        self, inputs: Mapping[str, npt.NDArray[np.float32]], output: str
    ) -> tuple[npt.NDArray[np.float32], str]:
        """`output` for the batch of `inputs` (same first axis), and the answering version."""
        sizes = {len(array) for array in inputs.values()}
        if len(sizes) != 1:
            raise PoisonError(f"{self.model_name}: inputs of different batch sizes {sorted(sizes)}")
        self.breaker.before()
        total = sizes.pop()
        starts = range(0, total, self.max_batch)
        if len(starts) > 1 and self.concurrency > 1:
            # every chunk in flight at once (up to `concurrency`): Triton batches and
            # runs them while the client encodes the next ones
            answers = list(self._pool().map(lambda s: self._call(inputs, output, s), starts))
        else:
            answers = [self._call(inputs, output, s) for s in starts]
        self.breaker.succeeded()
        version = next((v for _, v in reversed(answers) if v), self.model_version)
        return np.concatenate([values for values, _ in answers]), version

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.concurrency, thread_name_prefix=f"triton-{self.model_name}"
            )
        return self._executor

    def _call(
        self, inputs: Mapping[str, npt.NDArray[np.float32]], output: str, start: int
    ) -> tuple[npt.NDArray[np.float32], str]:
        """One request: the chunk of `inputs` from `start`, up to the max batch."""
        tensors = []
        for name, array in inputs.items():
            chunk = np.ascontiguousarray(array[start : start + self.max_batch], np.float32)
            tensor = grpcclient.InferInput(name, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            tensors.append(tensor)
        REQUEST_ITEMS.labels(self.model_name).observe(len(chunk))
        started = time.perf_counter()
        try:
            result = self.client.infer(
                self.model_name,
                tensors,
                model_version=self.model_version,
                outputs=[grpcclient.InferRequestedOutput(output)],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            error = classify(exc, self.model_name)
            if isinstance(error, TransientError):
                self.breaker.failed()
            raise error from exc
        finally:
            REQUEST_SECONDS.labels(self.model_name).observe(time.perf_counter() - started)
        values = result.as_numpy(output)
        if values is None:
            raise PoisonError(f"{self.model_name} returned no {output!r} output")
        return values.astype(np.float32), str(result.get_response().model_version or "")


class TritonClassifier(TritonModel):
    """The LCZ model: patches in, class probabilities out."""

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        return self.infer({LCZ_INPUT: batch}, LCZ_OUTPUT)


#: What Triton answers, whatever the status, for a model it has not loaded (yet).
NOT_LOADED = ("unknown model", "no available versions", "is not ready", "is not found")


def classify(exc: InferenceServerException, model: str) -> Exception:
    """Bad input is poison; anything else (server down, model loading, timeout) passes."""
    status = str(exc.status() or "")
    message = str(exc.message() or "").lower()
    if any(m in message for m in NOT_LOADED):
        # a server restarting answers before its models are loaded again
        return TransientError(f"{model} not loaded ({status or 'no status'}): {exc.message()}")
    if "INVALID_ARGUMENT" in status:
        return PoisonError(f"{model} rejected the input: {exc.message()}")
    return TransientError(f"{model} unavailable ({status or 'no status'}): {exc.message()}")
