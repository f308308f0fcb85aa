"""The LCZ model served by the real tritonserver equals the original Keras model."""

from __future__ import annotations

import numpy as np
import pytest

from revisit_cli.stack import StackConfig
from revisit_common.errors import PoisonError, TransientError
from revisit_inference.triton import TritonClassifier
from revisit_models.lcz import LCZ_MODEL

pytestmark = pytest.mark.integration


def test_triton_outputs_match_keras(stack: StackConfig, lcz_parity: dict[str, np.ndarray]) -> None:
    lcz = TritonClassifier(stack.triton_grpc_url, LCZ_MODEL, max_batch=32)
    patches = lcz_parity["dn"].astype(np.float32) / 10000.0
    probabilities, version = lcz.predict(patches)  # 90 patches: three requests
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
