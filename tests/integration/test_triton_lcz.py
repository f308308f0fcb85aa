"""The LCZ model served by the real tritonserver equals the original Keras model."""

from __future__ import annotations

import numpy as np
import pytest

from revisit_cli.stack import StackConfig
from revisit_common.errors import PoisonError, TransientError
from revisit_inference.triton import CircuitBreaker, TritonClassifier
from revisit_models.lcz import LCZ_MODEL

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("max_batch, concurrency", [(32, 1), (8, 4)])
def test_triton_outputs_match_keras(
    stack: StackConfig, lcz_parity: dict[str, np.ndarray], max_batch: int, concurrency: int
) -> None:
    lcz = TritonClassifier(
        stack.triton_grpc_url, LCZ_MODEL, max_batch=max_batch, concurrency=concurrency
    )
    patches = lcz_parity["dn"].astype(np.float32) / 10000.0
    # 90 patches: 3 requests one after the other, or 12 with 4 in flight (answers in order)
    probabilities, version = lcz.predict(patches)
    keras = lcz_parity["keras_probabilities"]
    assert version == "1"
    assert np.abs(probabilities - keras).max() < 1e-4
    assert (probabilities.argmax(1) == keras.argmax(1)).all()


def test_wrong_input_shape_is_poison(stack: StackConfig) -> None:
    lcz = TritonClassifier(stack.triton_grpc_url, LCZ_MODEL)
    with pytest.raises(PoisonError, match="rejected the input"):
        lcz.predict(np.zeros((2, 9, 32, 32), np.float32))


def test_unreachable_triton_is_transient() -> None:
    lcz = TritonClassifier("127.0.0.1:1", LCZ_MODEL, timeout_s=2)
    with pytest.raises(TransientError, match="unavailable"):
        lcz.predict(np.zeros((1, 10, 32, 32), np.float32))


def test_the_circuit_opens_after_repeated_failures_and_closes_on_success(
    stack: StackConfig,
) -> None:
    now = [0.0]
    breaker = CircuitBreaker(LCZ_MODEL, threshold=2, cooldown_s=30.0, clock=lambda: now[0])
    down = TritonClassifier("127.0.0.1:1", LCZ_MODEL, timeout_s=2, breaker=breaker)
    for _ in range(2):
        with pytest.raises(TransientError, match="unavailable"):
            down.predict(np.zeros((1, 10, 32, 32), np.float32))
    with pytest.raises(TransientError, match="circuit open after 2 failures"):
        down.predict(np.zeros((1, 10, 32, 32), np.float32))  # no call made
    now[0] = 31.0  # cooled down: one call goes through, to a server that is up now
    up = TritonClassifier(stack.triton_grpc_url, LCZ_MODEL, breaker=breaker)
    probabilities, _ = up.predict(np.full((1, 10, 32, 32), 0.1, np.float32))
    assert probabilities.shape == (1, 17)
    assert breaker.failures == 0 and breaker.open_until == 0.0
