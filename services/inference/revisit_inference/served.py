"""A model the service calls, with its card, and what one prediction step returns."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from revisit_common.cards import ModelCard
from revisit_common.errors import PoisonError
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
class Infer:
    """One model call that a predictor asks for: named inputs of B rows each, the output
    it wants. Predictors yield it and get the model's answer back (`Prediction`), so the
    calls of all the events of a poll can be merged into one (`answer_all`)."""

    served: ServedModel
    inputs: dict[str, npt.NDArray[np.float32]]
    output: str

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))


#: The model's output for the rows of an `Infer`, and the version that answered.
Answer = tuple[npt.NDArray[np.float32], str]


@dataclass(frozen=True)
class Predicted:
    """The model's outputs for a batch, and this pass's inputs as the drift monitor
    compares them with the training data (N, F) in the features of `reference`."""

    outputs: npt.NDArray[np.float32]
    inputs: npt.NDArray[np.float32]
    reference: Reference


#: A predictor's run: it yields the model calls it needs, each answered by `answer_all`,
#: and returns its outputs and inputs for the drift monitor (None: nothing predicted).
Prediction = Generator[Infer, Answer, Predicted | None]


def merged(requests: list[Infer]) -> dict[str, npt.NDArray[np.float32]]:
    """The inputs of several calls of one model as one batch: rows concatenated, each
    variable axis (dates, pixels) zero-padded to the longest. The models mask what is
    padded (PSE-TAE and the land-cover TAE by their masks and validity, tested to change
    nothing), as the Triton runner does when it groups requests."""
    out = {}
    for name in requests[0].inputs:
        arrays = [r.inputs[name] for r in requests]
        ndim = {a.ndim for a in arrays}
        if len(ndim) != 1:
            raise PoisonError(f"input {name!r} of one model has ranks {sorted(ndim)}")
        shape = np.max([a.shape for a in arrays], axis=0)
        padded = [
            np.pad(
                a, [(0, 0), *((0, int(m - d)) for m, d in zip(shape[1:], a.shape[1:], strict=True))]
            )
            if tuple(a.shape[1:]) != tuple(shape[1:])
            else a
            for a in arrays
        ]
        out[name] = np.concatenate(padded).astype(np.float32, copy=False)
    return out


#: Inputs of pending calls answered at once, at most (bytes): a poll of large AOIs is
#: answered in several rounds instead of holding every event's inputs in memory.
MERGE_BYTES = 256 << 20


def answer_all(
    predictions: list[Prediction | None], merge_bytes: int = MERGE_BYTES
) -> list[Predicted | None]:
    """Run the predictors together: the calls they wait on are grouped by model and
    output and sent as one (the model cuts it to its max batch and keeps several parts
    in flight); each predictor gets its own rows back. Predictors are started one after
    the other, and the pending calls are answered whenever their inputs reach
    `merge_bytes` (a single larger call is answered alone). A predictor's error (poison)
    ends the whole group: the runtime then handles its events one by one."""
    results: list[Predicted | None] = [None] * len(predictions)
    waiting: dict[int, Infer] = {}

    def advance(i: int, answer: Answer | None) -> None:
        generator = predictions[i]
        assert generator is not None
        try:
            waiting[i] = generator.send(answer) if answer is not None else next(generator)
        except StopIteration as done:
            waiting.pop(i, None)
            results[i] = done.value

    def drain() -> None:
        while waiting:
            groups: dict[tuple[int, str], list[int]] = {}
            for i, request in waiting.items():
                groups.setdefault((id(request.served.model), request.output), []).append(i)
            for members in groups.values():
                requests = [waiting[i] for i in members]
                first = requests[0]
                inputs = first.inputs if len(requests) == 1 else merged(requests)
                values, version = first.served.model.infer(inputs, first.output)
                total = sum(r.rows for r in requests)
                if len(values) != total:
                    raise PoisonError(
                        f"{first.served.name} answered {len(values)} rows for {total}"
                    )
                start = 0
                for i, request in zip(members, requests, strict=True):
                    rows = values[start : start + request.rows]
                    start += request.rows
                    advance(i, (rows, version))

    pending = 0  # bytes of the inputs waiting
    for i, generator in enumerate(predictions):
        if generator is None:
            continue
        advance(i, None)
        if i in waiting:
            pending += sum(a.nbytes for a in waiting[i].inputs.values())
        if pending >= merge_bytes:
            drain()
            pending = 0
    drain()
    return results
