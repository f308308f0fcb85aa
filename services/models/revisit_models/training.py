"""The training loop shared by every model of the project: seeded, CPU-thread bounded,
with a progress line per epoch, returning what the model card records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

Batch = tuple[Sequence[torch.Tensor], torch.Tensor]
Log = Callable[[str], None]


def seed_everything(seed: int, threads: int) -> np.random.Generator:
    """Seed torch and numpy; bound torch to `threads` CPU threads."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    return np.random.default_rng(seed)


def fit(
    model: nn.Module,
    batches: Callable[[np.random.Generator], Iterable[Batch]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    rng: np.random.Generator,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    log: Log = print,
    name: str = "model",
) -> dict[str, Any]:
    """Adam with cosine decay over `epochs`; `batches(rng)` yields one epoch's batches."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(epochs, 1))
    started = time.perf_counter()
    history: list[float] = []
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for inputs, target in batches(rng):
            optimiser.zero_grad()
            loss = loss_fn(model(*inputs), target)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += loss.item() * len(target)
            count += len(target)
        schedule.step()
        history.append(total / max(count, 1))
        if epoch == 1 or epoch == epochs or epoch % max(epochs // 10, 1) == 0:
            log(
                f"{name}: epoch {epoch}/{epochs} loss {history[-1]:.4f} "
                f"({time.perf_counter() - started:.0f} s)"
            )
    model.eval()
    return {
        "epochs": epochs,
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(history[-1], 4) if history else None,
        "optimiser": f"Adam lr {lr}, weight decay {weight_decay}, cosine decay",
    }


@torch.inference_mode()
def predict(
    model: nn.Module, inputs: Sequence[torch.Tensor], batch_size: int = 256
) -> torch.Tensor:
    """The model's outputs over `inputs` (all with the same first axis), in eval mode."""
    model.eval()
    n = len(inputs[0])
    parts = [
        model(*[x[start : start + batch_size] for x in inputs]) for start in range(0, n, batch_size)
    ]
    return torch.cat(parts)


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    """Shuffled index batches; a last batch of one sample is dropped (batch norm)."""
    order = rng.permutation(n)
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) > 1]
