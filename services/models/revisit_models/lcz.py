"""Sen2LCZ-Drop: the Local Climate Zone CNN of Qiu et al. (2020), ported to torch.

Reference: C. Qiu, X. Tong, M. Schmitt, B. Bechtel, X. X. Zhu, "Multilevel Feature
Fusion-Based CNN for Local Climate Zone Classification From Sentinel-2 Images: Benchmark
Results on the So2Sat LCZ42 Dataset", IEEE JSTARS 2020. The pretrained Keras weights
(So2Sat LCZ42, 17 classes) are loaded from their HDF5 file by layer name.

The network: four blocks of `convs_per_block` 3x3 conv + batch norm + ReLU (16, 32, 64,
128 channels); between blocks the max-pool and average-pool of the block are
concatenated (so channels double); dropout after the second and third merges. With
`fusion`, each merge also feeds a global-average-pool + dense softmax head, and the
output is the mean of the four softmaxes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from revisit_common.cards import ModelCard, TensorSpec

#: Sentinel-2 bands in the order the So2Sat LCZ42 models expect.
LCZ_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: So2Sat patches are L2A reflectance (digital number / 10000), no further normalisation.
LCZ_REFLECTANCE_DIVISOR = 10000.0
LCZ_PATCH_SIZE = 32
LCZ_NUM_CLASSES = 17
#: WUDAPT legend: class codes 1..10 are built types, 11..17 land-cover types A..G.
LCZ_CLASS_NAMES: tuple[str, ...] = (
    "1 compact high-rise",
    "2 compact mid-rise",
    "3 compact low-rise",
    "4 open high-rise",
    "5 open mid-rise",
    "6 open low-rise",
    "7 lightweight low-rise",
    "8 large low-rise",
    "9 sparsely built",
    "10 heavy industry",
    "A dense trees",
    "B scattered trees",
    "C bush, scrub",
    "D low plants",
    "E bare rock or paved",
    "F bare soil or sand",
    "G water",
)

_BN_EPSILON = 1e-3  # Keras' default, not torch's 1e-5: it changes outputs measurably.


class _ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, channels: int, depth: int) -> None:
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1),
                nn.BatchNorm2d(channels, eps=_BN_EPSILON),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


def _merge(x: torch.Tensor) -> torch.Tensor:
    # The original "max + average pooling, concatenated" down-sampling.
    return torch.cat([nn.functional.max_pool2d(x, 2), nn.functional.avg_pool2d(x, 2)], dim=1)


class Sen2LczDrop(nn.Module):
    """Sen2LCZ-Drop for (N, 10, 32, 32) reflectance patches; returns class probabilities."""

    def __init__(
        self,
        in_channels: int = len(LCZ_BANDS),
        num_classes: int = LCZ_NUM_CLASSES,
        depth: int = 17,
        width: int = 16,
        drop_rate: float = 0.2,
        fusion: bool = True,
    ) -> None:
        super().__init__()
        per_block = (depth - 1) // 4
        widths = [width * 2**i for i in range(4)]
        self.fusion = fusion
        self.block0 = _ConvBlock(in_channels, widths[0], per_block)
        self.block1 = _ConvBlock(2 * widths[0], widths[1], per_block)
        self.block2 = _ConvBlock(2 * widths[1], widths[2], per_block)
        self.block3 = _ConvBlock(2 * widths[2], widths[3], per_block)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(widths[3], num_classes)
        if fusion:
            self.head32 = nn.Linear(2 * widths[0], num_classes)
            self.head16 = nn.Linear(2 * widths[1], num_classes)
            self.head8 = nn.Linear(2 * widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m0 = _merge(self.block0(x))
        m1 = self.dropout(_merge(self.block1(m0)))
        m2 = self.dropout(_merge(self.block2(m1)))
        out = torch.softmax(self.head(self.block3(m2).mean(dim=(2, 3))), dim=1)
        if not self.fusion:
            return out
        heads = [
            torch.softmax(self.head32(m0.mean(dim=(2, 3))), dim=1),
            torch.softmax(self.head16(m1.mean(dim=(2, 3))), dim=1),
            torch.softmax(self.head8(m2.mean(dim=(2, 3))), dim=1),
        ]
        return (out + heads[0] + heads[1] + heads[2]) / 4.0


# The Keras file names layers by creation order. Its training script created one dense
# head on the third merge, replaced it by a second one (created after the final head),
# so the file has dense_1, dense_2, dense_4 (final, on block 3) and dense_5 (on merge 3);
# the file's own layer order (global_average_pooling2d_4 -> dense_4, ..._5 -> dense_5)
# confirms it. dense_3 was never part of the model.
_DENSE_NAMES = {"head32": "dense_1", "head16": "dense_2", "head": "dense_4", "head8": "dense_5"}


def load_keras_weights(model: Sen2LczDrop, path: Path) -> Sen2LczDrop:
    """Copy the weights of the pretrained Keras HDF5 file into ``model`` (in place)."""
    with h5py.File(path, "r") as h5:

        def weight(layer: str, name: str) -> torch.Tensor:
            try:
                return torch.from_numpy(np.asarray(h5[f"{layer}/{layer}/{name}:0"]))
            except KeyError as exc:
                raise ValueError(
                    f"{path} has no weight {layer}/{name}: is it the Sen2LCZ-Drop "
                    "(depth 17, fusion) weight file?"
                ) from exc

        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        with torch.no_grad():
            for i, conv in enumerate(convs, start=1):
                # Keras kernels are (kh, kw, in, out); torch wants (out, in, kh, kw).
                conv.weight.copy_(weight(f"conv2d_{i}", "kernel").permute(3, 2, 0, 1))
                bias = conv.bias
                assert bias is not None
                bias.copy_(weight(f"conv2d_{i}", "bias"))
            for i, bn in enumerate(norms, start=1):
                name = f"batch_normalization_{i}"
                bn.weight.copy_(weight(name, "gamma"))
                bn.bias.copy_(weight(name, "beta"))
                running_mean, running_var = bn.running_mean, bn.running_var
                assert running_mean is not None and running_var is not None
                running_mean.copy_(weight(name, "moving_mean"))
                running_var.copy_(weight(name, "moving_variance"))
            for attr, layer in _DENSE_NAMES.items():
                if not hasattr(model, attr):
                    continue
                dense: nn.Linear = getattr(model, attr)
                dense.weight.copy_(weight(layer, "kernel").T)
                dense.bias.copy_(weight(layer, "bias"))
    return model.eval()


def export_torchscript(weights: Path, destination: Path) -> Path:
    """Load the Keras weights and save the model as TorchScript at ``destination``."""
    model = load_keras_weights(Sen2LczDrop(), weights)
    scripted = torch.jit.script(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(".tmp")
    scripted.save(str(tmp))  # type: ignore[no-untyped-call]
    tmp.replace(destination)
    return destination


LCZ_MODEL = "lcz_sen2lcz_drop"


def lcz_card() -> ModelCard:
    """The model card of the pretrained Sen2LCZ-Drop (converted, not trained here)."""
    return ModelCard(
        name=LCZ_MODEL,
        version="1",
        task="classification",
        summary=(
            "Sen2LCZ-Drop (Qiu et al. 2020), pretrained on So2Sat LCZ42: Local Climate Zone "
            "of 32×32 Sentinel-2 patches (10 bands, reflectance 0..1)."
        ),
        inputs=[
            TensorSpec(
                "patches",
                [len(LCZ_BANDS), LCZ_PATCH_SIZE, LCZ_PATCH_SIZE],
                " ".join(LCZ_BANDS) + ", reflectance",
            )
        ],
        outputs=[TensorSpec("probabilities", [LCZ_NUM_CLASSES], "LCZ 1..10, A..G")],
        classes=list(LCZ_CLASS_NAMES),
        data={"training": "So2Sat LCZ42 (by the authors); weights converted from Keras HDF5"},
        split={"kind": "official So2Sat LCZ42 test split (24,188 patches)"},
        metrics={"so2sat_test_oa": 0.6937, "so2sat_test_kappa": 0.6644},
        reproduce="revisit models build  (converts data/so2sat-lcz/*.hdf5)",
        notes=[
            "Metrics reported by the authors (Acc_32.mat); the port is checked against "
            "the Keras model in tests/unit/test_lcz_parity.py."
        ],
    )


def export_pretrained(weights: Path, staging: Path, force: bool = False) -> Path:
    """The converted LCZ model as a trained-model directory `<staging>/<name>/1/`."""
    out = staging / LCZ_MODEL / "1"
    if (out / "model.pt").exists() and (out / "card.json").exists() and not force:
        return out
    export_torchscript(weights, out / "model.pt")
    card = lcz_card()
    card.created = "2020-01-01T00:00:00Z"  # the weights' publication, not the conversion
    (out / "card.json").write_text(card.to_json())
    return out
