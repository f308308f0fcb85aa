"""What a training run leaves behind, and what `revisit models build` reads.

A trained model is a directory `<root>/<name>/<version>/` holding:

- ``model.pt``: the whole inference model as TorchScript (normalisation included), fed
  the physical inputs that the preprocess service produces (reflectance, dB, days);
- ``card.json``: the model card, machine-readable: the tensors of its Triton signature,
  the class names, the data it was trained on, the split, held-out metrics, training
  time, the command that reproduces it, and the training statistics of its inputs
  (which the inference service compares live inputs with, to see domain shift);
- ``card.md``: the same card for people.

Trained models of the project live in ``data/models/`` (small, committed, with their
cards); `revisit models build` turns them into the Triton model repository.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

CARD_FILE = "card.json"
MODEL_FILE = "model.pt"
TRITON_TYPES = {"FP32", "INT32", "INT64", "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model, per sample (the batch axis is implied).

    A dimension of -1 varies between requests (the dates of a season): Triton's Python
    backend of the project pads such axes with zeros, so the matching mask must treat
    zeros as "not observed".
    """

    name: str
    dims: list[int]
    doc: str
    dtype: str = "FP32"

    def __post_init__(self) -> None:
        if self.dtype not in TRITON_TYPES:
            raise ValueError(f"{self.name}: dtype {self.dtype} not in {sorted(TRITON_TYPES)}")


@dataclass
class ModelCard:
    name: str
    version: str
    task: str  # "classification" or "regression"
    summary: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    classes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    input_statistics: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""
    notes: list[str] = field(default_factory=list)
    max_batch_size: int = 256
    created: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        raw = json.loads(text)
        raw["inputs"] = [TensorSpec(**t) for t in raw["inputs"]]
        raw["outputs"] = [TensorSpec(**t) for t in raw["outputs"]]
        return cls(**raw)


def training_environment(threads: int) -> dict[str, Any]:
    return {
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def save_model(out_dir: Path, module: torch.nn.Module, card: ModelCard) -> Path:
    """Script `module`, write model.pt, card.json and card.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(module.eval())
    tmp = out_dir / (MODEL_FILE + ".tmp")
    scripted.save(str(tmp))  # type: ignore[no-untyped-call]
    tmp.replace(out_dir / MODEL_FILE)
    card.created = card.created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (out_dir / CARD_FILE).write_text(card.to_json())
    (out_dir / "card.md").write_text(render_card(card))
    return out_dir


def load_card(model_dir: Path) -> ModelCard:
    path = model_dir / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {model_dir} a trained model directory?")
    return ModelCard.from_json(path.read_text())


def _tensor_line(t: TensorSpec) -> str:
    return f"| `{t.name}` | {t.dtype} | {t.dims} | {t.doc} |"


def _table(rows: dict[str, Any]) -> list[str]:
    return [f"- {key}: {value}" for key, value in rows.items()]


def render_card(card: ModelCard) -> str:
    """The model card as Markdown."""
    lines = [
        f"# {card.name} (version {card.version})",
        "",
        card.summary,
        "",
        f"Created {card.created}. Task: {card.task}.",
        "",
        "## Signature (per sample; the batch axis is implied)",
        "",
        "| tensor | type | dims | meaning |",
        "|---|---|---|---|",
        *[_tensor_line(t) for t in card.inputs],
        *[_tensor_line(t) for t in card.outputs],
        "",
    ]
    if card.classes:
        lines += ["## Classes", "", ", ".join(f"{i}: {c}" for i, c in enumerate(card.classes)), ""]
    lines += ["## Data", "", *_table(card.data), "", "## Split", "", *_table(card.split), ""]
    lines += ["## Held-out metrics", ""]
    for key, value in card.metrics.items():
        if isinstance(value, dict) and "per_class" in value:
            lines.append(
                f"- {key}: OA {value['overall_accuracy']}, kappa {value['kappa']}, "
                f"mIoU {value['mean_iou']}, macro F1 {value['macro_f1']} "
                f"({value['samples']} samples)"
            )
            lines += ["", "  | class | support | F1 | IoU |", "  |---|---|---|---|"]
            for name, scores in value["per_class"].items():
                lines.append(
                    f"  | {name} | {scores['support']} | {scores['f1']} | {scores['iou']} |"
                )
            lines.append("")
        else:
            lines.append(f"- {key}: {json.dumps(value)}")
    lines += ["", "## Training", "", *_table(card.training), ""]
    if card.reproduce:
        lines += ["## Reproduce", "", "```", card.reproduce, "```", ""]
    if card.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in card.notes], ""]
    return "\n".join(lines)
