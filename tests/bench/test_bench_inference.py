"""`make bench` part inference: every model of the built repository (the trained ones
and the pretrained LCZ model) through the real Triton server versus the same TorchScript
in process (the baseline), side by side, on real inputs.

For batch sizes 1, 16, 64 and 256, and the model's max batch when it is larger (the
per-pixel models: the size of the requests the inference service sends for an area):
the in-process row calls the model one batch at a time (what a service without Triton
does); the Triton row keeps `CLIENTS` requests of that batch size in flight (gRPC, one
client each, each sending its next request as soon as its last is answered), so the
server is never idle waiting for the next request. Reported: samples/s of each and the
ratio Triton / in-process.
The in-process baseline gets the allocator setting the backend gives its stubs (freed
memory kept for the next call); without it, its speed depended on what the process had
allocated before (PSE-TAE at batch 64: 8.5 or 20 ms a call).
On a 2-core machine client and server share the cores: read the ratios, not the rates.
The PSE-TAE models get full pixel sets (64 pixels a date, drawn among the sample's valid
ones), which is what the preprocess service sends, not the training layout's sets
padded to 64 (one-pixel WorldCereal samples: 63 pads a date, no compute to amortise the
transfer of a 2 MB request).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.cards import load_card
from revisit_common.payload import PayloadStore
from revisit_inference.handler import handle_observation, handle_observations
from revisit_inference.served import ServedModel
from revisit_inference.triton import TritonModel
from tests.backend import load_backend
from tests.bench.timing import concurrent_throughput, throughput
from tests.model_inputs import Inputs, dense_pixel_sets, latest_version, real_inputs
from tests.unit.test_inference_parcels import NoLcz

pytestmark = pytest.mark.integration
BATCHES = (1, 16, 64, 256)
CLIENTS = 4


@pytest.fixture(scope="module", autouse=True)
def keep_freed_memory() -> None:
    load_backend()._keep_freed_memory()


def _rows(inputs: Inputs, n: int) -> Inputs:
    """`n` samples: the real ones repeated as needed."""
    size = len(next(iter(inputs.values())))
    index = np.arange(n) % size
    return {k: np.ascontiguousarray(v[index]) for k, v in inputs.items()}


@pytest.mark.parametrize(
    "model_dir",
    sorted(
        latest_version(p.parent)
        for p in StackConfig().triton_model_repository.glob("*/config.pbtxt")
    ),
    ids=lambda p: p.parent.name,
)
def test_bench_triton_vs_in_process(
    stack: StackConfig, worldcereal_datasets: Path, model_dir: Path
) -> None:
    card = load_card(model_dir)
    sample = real_inputs(card.name, worldcereal_datasets)[-1]
    if "pixels" in sample:  # PSE-TAE: full sets of 64, as the preprocess service sends
        sample = dense_pixel_sets(sample)
    local = torch.jit.load(str(model_dir / "model.pt")).eval()
    clients = [TritonModel.for_card(stack.triton_grpc_url, card) for _ in range(CLIENTS)]
    output = card.outputs[0].name
    rows = []
    for n in sorted({*BATCHES, card.max_batch_size}):
        batch = _rows(sample, n)
        tensors = [torch.from_numpy(batch[t.name]) for t in card.inputs]

        def in_process(tensors: list[torch.Tensor] = tensors, n: int = n) -> int:
            with torch.inference_mode():
                local(*tensors)
            return n

        def served(client: TritonModel, batch: Inputs = batch, n: int = n) -> int:
            client.infer(batch, output)
            return n

        calls = [lambda c=c: served(c) for c in clients]
        rows.append((n, throughput(in_process), concurrent_throughput(calls)))
    print(f"\n{card.name}: samples/s (torch threads {torch.get_num_threads()}, {CLIENTS} clients)")
    print(f"{'batch':<8}{'in-process':>12}{'triton':>10}{'ratio':>8}")
    for n, a, b in rows:
        print(f"{n:<8}{a:>12.0f}{b:>10.0f}{b / a:>8.2f}")
        assert a > 0 and b > 0


def test_bench_a_poll_grouped_vs_one_by_one(
    stack: StackConfig,
    demo_poll: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    """The inference handler on a poll of the demo's real passes (34 parcels on 10
    optical and 12 radar passes, the region's 10 passes), through the real Triton: every
    event alone (the baseline: a call per event and indicator) against the poll's calls
    merged per model (`handle_observations`)."""
    store, events = demo_poll
    repository = stack.triton_model_repository
    served = {}
    for role, name in {
        "crops": "psetae_s2",
        "bio": "biophys_prosail",
        "land": "landcover_tae",
        "fusion": "psetae_s1s2",
    }.items():
        card = load_card(latest_version(repository / name))
        model = TritonModel.for_card(stack.triton_grpc_url, card, concurrency=CLIENTS)
        served[role] = ServedModel(model, card)

    def one_by_one() -> int:
        for event in events:
            handle_observation(event, store, NoLcz(), **served)
        return len(events)

    def grouped() -> int:
        handle_observations(events, store, NoLcz(), **served)
        return len(events)

    alone, together = throughput(one_by_one, 10.0), throughput(grouped, 10.0)
    print(f"\npoll of {len(events)} observations through Triton: observations/s")
    print(f"{'one by one':<12}{'grouped':>10}{'ratio':>8}")
    print(f"{alone:<12.1f}{together:>10.1f}{together / alone:>8.2f}")
    assert alone > 0 and together > 0
