"""`make bench` part lcz: LCZ inference throughput through the real Triton server versus
in-process TorchScript (the baseline), side by side on the same machine and patches.

Reports patches per second and the ratio Triton / in-process for batch sizes 1, 16, 64,
256. With several batch-1 clients in flight, Triton's dynamic batcher groups requests;
the row `1 x 16 clients` shows it. Numbers depend on the machine: read the ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from revisit_cli.stack import StackConfig, up
from revisit_inference.triton import TritonClassifier
from revisit_models.lcz import LCZ_MODEL
from tests.bench.timing import throughput

pytestmark = pytest.mark.integration
BATCHES = (1, 16, 64, 256)


def test_bench_triton_vs_in_process(stack: StackConfig, lcz_parity: dict[str, np.ndarray]) -> None:
    up(stack, components=("triton",))
    base = lcz_parity["dn"].astype(np.float32) / 10000.0
    patches = np.concatenate([base] * 3)  # 270 real patches
    model = torch.jit.load(str(stack.triton_model_repository / LCZ_MODEL / "1" / "model.pt")).eval()
    triton = TritonClassifier(stack.triton_grpc_url, LCZ_MODEL)

    def local(n: int) -> Callable[[], int]:
        def run() -> int:
            with torch.inference_mode():
                model(torch.from_numpy(patches[:n]))
            return n

        return run

    def served(n: int) -> Callable[[], int]:
        def run() -> int:
            triton.predict(patches[:n])
            return n

        return run

    rows = []
    for n in BATCHES:
        rows.append((f"{n}", throughput(local(n)), throughput(served(n))))
    clients = [TritonClassifier(stack.triton_grpc_url, LCZ_MODEL) for _ in range(16)]
    pool = ThreadPoolExecutor(len(clients))

    def concurrent() -> int:
        list(pool.map(lambda c: c.predict(patches[:1]), clients))
        return len(clients)

    rows.append(("1 x 16 clients", throughput(local(16)), throughput(concurrent)))
    pool.shutdown()
    print(f"\nLCZ Sen2LCZ-Drop, patches/s (torch threads: {torch.get_num_threads()})")
    print(f"{'batch':<16}{'in-process':>12}{'triton':>10}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<16}{a:>12.0f}{b:>10.0f}{b / a:>8.2f}")
        assert a > 0 and b > 0
