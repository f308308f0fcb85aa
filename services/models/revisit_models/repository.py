"""`revisit models build`: the Triton model repository from the project's models.

For every trained model directory `<trained>/<name>/<version>/` (model.pt + card.json,
see `artefact.py`) and for the pretrained LCZ model (converted from its Keras weights),
the repository gets:

    <repository>/<name>/config.pbtxt       inputs, outputs, max batch size, dynamic
                                           batching, instance group (CPU or GPU)
    <repository>/<name>/<version>/model.pt the TorchScript model
    <repository>/<name>/<version>/model.py the project's Python-backend runner
    <repository>/<name>/<version>/card.json the model card (the inference service reads
                                           class names and training statistics there)

Versions are directories: a new training run written as version 2 is served next to
version 1 (`version_policy` keeps the latest `versions`); the inference service sends
the version it asks for and records the one that answered. The repository is a build
output (not committed): CPU instances by default (what the embedded stack runs),
`--instance-kind gpu` for production; `--instances` sets their number.
"""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from revisit_common.cards import CARD_FILE, MODEL_FILE, ModelCard, TensorSpec, load_card

BACKEND_FILE = "model.py"
INSTANCE_KINDS = ("cpu", "gpu")
#: Instances of each model by kind, unless told. On CPU two instances (stub processes),
#: each with half the cores, serve more than one with all of them: one computes while
#: the other takes its next request, and a pass on one core needs no synchronisation.
#: On the 2-core development machine (`make bench`, 4 clients, batch 64) PSE-TAE went
#: from 0.67 to 0.81 of in process and LCZ from 0.76 to 0.88, for about 310 MiB more
#: memory a model (a stub imports torch). One per GPU: never measured here (no GPU was
#: lent), so Triton's default.
DEFAULT_INSTANCES = {"cpu": 2, "gpu": 1}


@dataclass(frozen=True)
class Built:
    name: str
    version: str
    written: list[Path]


#: How long Triton's dynamic batcher holds a request that does not fill the max batch,
#: waiting for others. Short: the inference service already sends full batches (a poll's
#: calls merged, cut at the max batch, 4 in flight), so waiting only delays the last,
#: partial request of a call; 2 ms (the first value) cost a third of the throughput of
#: single-sample requests (`make bench`, biophys_prosail at batch 1: 989 -> 1,411/s).
QUEUE_DELAY_US = 200


def config_pbtxt(
    card: ModelCard, instance_kind: str = "cpu", versions: int = 1, instances: int | None = None
) -> str:
    """config.pbtxt of a model card (deterministic: the committed files are checked).
    `instances` per CPU, or per GPU; `DEFAULT_INSTANCES` of the kind when None."""
    if instance_kind not in INSTANCE_KINDS:
        raise ValueError(f"instance kind must be one of {INSTANCE_KINDS}, not {instance_kind!r}")
    count = DEFAULT_INSTANCES[instance_kind] if instances is None else instances
    if count < 1:
        raise ValueError(f"instances must be at least 1, not {count}")

    def tensors(specs: list[TensorSpec]) -> str:
        rows = []
        for t in specs:
            dims = ", ".join(str(d) for d in t.dims)
            rows.append(
                f'  {{\n    name: "{t.name}"\n    data_type: TYPE_{t.dtype}\n'
                f"    dims: [ {dims} ]  # {t.doc}\n  }}"
            )
        return ",\n".join(rows)

    kind = "KIND_GPU" if instance_kind == "gpu" else "KIND_CPU"
    summary = card.summary.replace("\n", " ")
    classes = f"# classes: {', '.join(card.classes)}\n" if card.classes else ""
    return (
        f"# {card.name}: {summary}\n"
        f"# Written by `revisit models build` from the model card (card.json); do not edit.\n"
        f"{classes}"
        f'name: "{card.name}"\n'
        'backend: "python"\n'
        f"max_batch_size: {card.max_batch_size}\n"
        f"version_policy: {{ latest: {{ num_versions: {versions} }} }}\n"
        f"input [\n{tensors(card.inputs)}\n]\n"
        f"output [\n{tensors(card.outputs)}\n]\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}\n"
        f"instance_group [ {{ kind: {kind}, count: {count} }} ]\n"
        'parameters: { key: "torchscript" value: { string_value: "model.pt" } }\n'
    )


def _copy(source: Path, target: Path, force: bool) -> bool:
    if target.exists() and not force and filecmp.cmp(source, target, shallow=False):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return True


def _write(target: Path, text: str) -> bool:
    if target.exists() and target.read_text() == text:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return True


def trained_models(trained: Path) -> list[Path]:
    """Every `<trained>/<name>/<version>/` that holds a card and a model."""
    return sorted(
        p.parent for p in trained.glob(f"*/*/{CARD_FILE}") if (p.parent / MODEL_FILE).exists()
    )


def install_model(
    model_dir: Path,
    repository: Path,
    backend: Path,
    instance_kind: str = "cpu",
    force: bool = False,
    instances: int | None = None,
) -> Built:
    """Put one trained model (model.pt + card.json) into the repository."""
    card = load_card(model_dir)
    if model_dir.name != card.version:
        raise ValueError(f"{model_dir}: directory {model_dir.name} but card version {card.version}")
    home = repository / card.name
    version_dir = home / card.version
    written = []
    versions = len([p for p in model_dir.parent.iterdir() if (p / CARD_FILE).exists()])
    if _write(
        home / "config.pbtxt", config_pbtxt(card, instance_kind, max(versions, 1), instances)
    ):
        written.append(home / "config.pbtxt")
    for source, name in (
        (model_dir / MODEL_FILE, MODEL_FILE),
        (model_dir / CARD_FILE, CARD_FILE),
        (backend, BACKEND_FILE),
    ):
        if _copy(source, version_dir / name, force):
            written.append(version_dir / name)
    return Built(card.name, card.version, written)


def build_repository(
    repository: Path,
    roots: Sequence[Path],
    backend: Path,
    instance_kind: str = "cpu",
    force: bool = False,
    instances: int | None = None,
) -> list[Built]:
    """Install every trained model found under `roots` (`<root>/<name>/<version>/`), and
    remove the versions of those models that the roots no longer have (a version
    replaced by a retrained one must not be served again)."""
    built = [
        install_model(model_dir, repository, backend, instance_kind, force, instances)
        for root in roots
        for model_dir in trained_models(root)
    ]
    kept = {(b.name, b.version) for b in built}
    for name in sorted({b.name for b in built}):
        for version_dir in sorted((repository / name).iterdir()):
            if version_dir.is_dir() and (name, version_dir.name) not in kept:
                shutil.rmtree(version_dir)
                built.append(Built(name, version_dir.name, [version_dir]))
    return built
