"""What a training run leaves behind, and what `revisit models build` reads.

A trained model is a directory `<root>/<name>/<version>/` holding:

- ``model.pt``: the whole inference model as TorchScript (normalisation included), fed
  the physical inputs that the preprocess service produces (reflectance, dB, days);
- ``card.json``: the model card, machine-readable: the tensors of its Triton signature,
  the class names, the data it was trained on, the split, held-out metrics, training
  time, the command that reproduces it, and the training statistics of its inputs
  (which the inference service compares live inputs with, to see domain shift);
- ``card.md``: the same card for people.

The card itself (`ModelCard`, `load_card`) is `revisit_common.cards`: the inference
service reads cards without torch. Trained models of the project live in
``data/models/`` (small, committed, with their cards); `revisit models build` turns
them into the Triton model repository.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from revisit_common.cards import CARD_FILE, MODEL_FILE, ModelCard, TensorSpec


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
