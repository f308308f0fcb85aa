"""Batching across messages: the demo's real passes of a poll (parcels of both sensors,
the region) handled together make one call per model, and give what handling them one
by one gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.payload import PayloadStore
from revisit_common.runtime import Output
from revisit_inference.handler import handle_observation, handle_observations
from revisit_inference.served import Infer, ServedModel, answer_all, merged
from tests.model_inputs import Inputs, LocalModel, latest_version
from tests.unit.test_inference_parcels import NoLcz

MODELS = REPO_ROOT / "data" / "models"


class Counting(LocalModel):
    """The model in process, counting the rows of each call."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self.sizes: list[int] = []

    def infer(self, inputs: Inputs, output: str) -> tuple[np.ndarray, str]:
        self.sizes.append(len(next(iter(inputs.values()))))
        return super().infer(inputs, output)


def models() -> dict[str, ServedModel]:
    names = {
        "crops": "psetae_s2",
        "bio": "biophys_prosail",
        "land": "landcover_tae",
        "fusion": "psetae_s1s2",
    }
    out = {}
    for role, name in names.items():
        model = Counting(latest_version(MODELS / name))
        out[role] = ServedModel(model, model.card)
    return out


def same_outputs(mine: list[list[Output]], theirs: list[list[Output]]) -> int:
    """Assert that two handlings of the same events gave the same batches (headers
    aside: ids and times); returns the predictions compared."""
    compared = 0
    for ours, others in zip(mine, theirs, strict=True):
        assert [o.key for o in ours] == [o.key for o in others]
        for a, b in zip([o.event for o in ours], [o.event for o in others], strict=True):
            assert isinstance(a, pb.PredictionBatch) and isinstance(b, pb.PredictionBatch)
            assert (a.indicator, a.model_name, a.model_version, list(a.notes)) == (
                b.indicator,
                b.model_name,
                b.model_version,
                list(b.notes),
            )
            assert [(p.entity_id, p.class_code, p.observations) for p in a.predictions] == [
                (p.entity_id, p.class_code, p.observations) for p in b.predictions
            ]
            for p, q in zip(a.predictions, b.predictions, strict=True):
                # dates padded to the poll's longest season: masked, so the same answer
                np.testing.assert_allclose(p.probabilities, q.probabilities, atol=1e-5)
                np.testing.assert_allclose(p.values, q.values, rtol=1e-5, atol=1e-6)
                compared += 1
    return compared


def test_a_poll_makes_one_call_per_model_and_the_answers_of_one_by_one(
    demo_poll: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    store, events = demo_poll
    alone, together = models(), models()
    one_by_one = [handle_observation(e, store, NoLcz(), **alone) for e in events]
    grouped = handle_observations(events, store, NoLcz(), **together)
    valid = Counter(e.kind for e in events if not e.no_valid_observation)
    assert valid == {"parcel_pixels": 10, "parcel_s1": 12, "region_pixels": 10}
    calls = {role: len(m.model.sizes) for role, m in alone.items()}  # type: ignore[attr-defined]
    # one by one: a call per valid pass and indicator (biophysics: parcels and region;
    # S1+S2: each radar pass and each optical pass after November's, the first)
    assert calls == {"crops": 10, "bio": 20, "land": 10, "fusion": 12 + 9}
    for role, served in together.items():
        sizes = served.model.sizes  # type: ignore[attr-defined]
        assert sizes == [sum(alone[role].model.sizes)], role  # type: ignore[attr-defined]
    assert same_outputs(grouped, one_by_one) > 1000


def test_a_byte_budget_answers_the_poll_in_rounds(
    demo_poll: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    """With a budget smaller than any event's inputs, each call is answered as soon as
    it is asked: the calls (and the memory) of one by one, the same outputs."""
    store, events = demo_poll
    rounds, together = models(), models()
    tight = handle_observations(events, store, NoLcz(), **rounds, merge_bytes=1)
    grouped = handle_observations(events, store, NoLcz(), **together)
    calls = {role: len(m.model.sizes) for role, m in rounds.items()}  # type: ignore[attr-defined]
    assert calls == {"crops": 10, "bio": 20, "land": 10, "fusion": 12 + 9}
    assert same_outputs(tight, grouped) > 1000


def test_inputs_of_different_lengths_are_padded_and_split_back() -> None:
    class Echo:
        model_name = "echo"

        def infer(self, inputs: Inputs, output: str) -> tuple[np.ndarray, str]:
            return inputs["x"].sum(axis=1, keepdims=True), "7"

    echo = ServedModel(Echo(), None)  # type: ignore[arg-type]

    def asks(values: list[list[float]]):  # type: ignore[no-untyped-def]
        answer, version = yield Infer(echo, {"x": np.array(values, np.float32)}, "y")
        return answer.ravel().tolist(), version

    first = Infer(echo, {"x": np.ones((2, 3), np.float32)}, "y")
    second = Infer(echo, {"x": np.ones((1, 5), np.float32)}, "y")
    assert merged([first, second])["x"].tolist() == [[1, 1, 1, 0, 0]] * 2 + [[1] * 5]
    results = answer_all([asks([[1, 2], [3, 4]]), None, asks([[5, 6, 7]])])
    assert results == [([3.0, 7.0], "7"), None, ([18.0], "7")]
    ranks = [
        Infer(echo, {"x": np.ones((2, 3), np.float32)}, "y"),
        Infer(echo, {"x": np.ones(2, np.float32)}, "y"),
    ]
    with pytest.raises(PoisonError, match="ranks"):
        merged(ranks)
