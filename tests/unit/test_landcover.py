"""The per-pixel land-cover TAE on the real eo-learn patch: its legend, the spatial split,
padding invariance (eager and TorchScript), a short real training run and the indicator
fractions the inference service aggregates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from revisit_cli.stack import REPO_ROOT
from revisit_common.cards import MODEL_FILE, ModelCard, TensorSpec, load_card
from revisit_common.indicators import INDICATOR_CLASSES, area_fractions
from revisit_models.artefact import save_model
from revisit_models.landcover import (
    LEGEND,
    LEGEND_CODES,
    LULC_CODES,
    LandCoverPatch,
    LandCoverTAE,
    disturbed_forest,
    evaluate,
    load_patch,
    spatial_split,
    train_landcover,
    window_inputs,
    year_slice,
)

REPO = REPO_ROOT
DATA = REPO / "data" / "eo-learn"
COMMITTED = REPO / "data" / "models" / "landcover_tae" / "1"
Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def patch() -> LandCoverPatch:
    return load_patch(DATA)


@pytest.fixture(scope="module")
def model(patch: LandCoverPatch) -> LandCoverTAE:
    torch.manual_seed(0)
    observed = patch.ndvi[~patch.cloud]
    net = LandCoverTAE(ndvi_mean=float(observed.mean()), ndvi_std=float(observed.std()))
    # Non-trivial batch-norm statistics, as after training.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
                module.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
    return net.eval()


@pytest.fixture(scope="module")
def inputs(patch: LandCoverPatch) -> Inputs:
    """Real pixels (every 37th of the patch) over the year 2017."""
    ndvi = patch.ndvi.reshape(len(patch.days), -1).T[::37]
    clear = ~patch.cloud.reshape(len(patch.days), -1).T[::37]
    window = window_inputs(
        ndvi, clear, patch.days, year_slice(patch.dates, "2017-01-01", "2018-01-01")
    )
    return window.inputs()


def _pad(inputs: Inputs, extra: int, fill: float) -> Inputs:
    ndvi, valid, positions = inputs
    n = len(ndvi)
    pad = torch.full((n, extra), fill)
    return (
        torch.cat([ndvi, pad], 1),
        torch.cat([valid, torch.zeros(n, extra)], 1),
        torch.cat([positions, pad * 7.0], 1),
    )


def test_legend_is_the_classes_of_the_labels(patch: LandCoverPatch) -> None:
    codes, counts = np.unique(patch.codes, return_counts=True)
    assert dict(zip(codes.tolist(), counts.tolist(), strict=True)) == {
        0: 155,
        1: 11,
        2: 7601,
        3: 1777,
        4: 358,
        8: 198,
    }
    assert tuple(LULC_CODES[c] for c in LEGEND_CODES) == LEGEND
    assert LEGEND == ("cultivated land", "forest", "grassland", "shrubland", "artificial surface")
    assert (patch.labels[patch.codes == 0] == -1).all()
    assert np.bincount(patch.labels[patch.labels >= 0]).tolist() == [11, 7601, 1777, 358, 198]
    assert patch.ndvi.shape == patch.cloud.shape == (68, 101, 100)
    assert patch.days[0] == 0 and (np.diff(patch.days) >= 0).all()
    legend_indicators = {k for k, v in INDICATOR_CLASSES.items() if set(v) <= set(LEGEND)}
    assert legend_indicators == {"tree", "built_up", "cropland"}


def test_load_patch_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"LULC\.npy"):
        load_patch(tmp_path)


def test_spatial_split_is_disjoint_with_a_gap(patch: LandCoverPatch) -> None:
    split = spatial_split(patch.labels, holdout_columns=25, gap_columns=2)
    assert not (split.train & split.holdout).any()
    assert not (split.train & split.gap).any() and not (split.gap & split.holdout).any()
    columns = np.nonzero(split.train.any(0))[0]
    assert columns.min() == 0 and columns.max() == 72
    assert np.nonzero(split.gap.any(0))[0].tolist() == [73, 74]
    assert np.nonzero(split.holdout.any(0))[0].tolist() == list(range(75, 100))
    labelled = patch.labels >= 0
    assert (split.train | split.gap | split.holdout).sum() == labelled.sum() == 9945
    assert split.holdout.sum() == labelled[:, 75:].sum() == 2505
    with pytest.raises(ValueError):
        spatial_split(patch.labels, holdout_columns=99, gap_columns=1)


def test_padded_dates_do_not_change_the_output(model: LandCoverTAE, inputs: Inputs) -> None:
    scripted = torch.jit.script(model)
    with torch.no_grad():
        reference = model(*inputs)
        assert torch.allclose(reference.sum(1), torch.ones(len(reference)), atol=1e-5)
        for net in (model, scripted):
            for extra, fill in ((1, 0.0), (13, 0.0), (5, 123.0), (4, float("nan"))):
                padded = net(*_pad(inputs, extra, fill))
                assert torch.allclose(padded, reference, atol=1e-6), (extra, fill)


def test_invalid_dates_are_ignored(model: LandCoverTAE, inputs: Inputs) -> None:
    ndvi, valid, positions = inputs
    assert 0 < valid.mean() < 1  # real clouds
    with torch.no_grad():
        reference = model(*inputs)
        noisy = torch.where(valid > 0, ndvi, torch.rand_like(ndvi) * 5 - 2)
        moved = torch.where(valid > 0, positions, torch.rand_like(positions) * 900)
        assert torch.allclose(model(noisy, valid, moved), reference, atol=1e-6)
        # The cloud-free dates alone, compacted: the same output for the first pixel.
        keep = valid[0] > 0
        alone = model(ndvi[:1, keep], valid[:1, keep], positions[:1, keep])
        assert torch.allclose(alone, reference[:1], atol=1e-5)
        # The NDVI of valid dates matters.
        assert not torch.allclose(model(ndvi * 0.5, valid, positions), reference, atol=1e-3)
        # Nothing observed: the uniform distribution.
        nothing = model(ndvi, torch.zeros_like(valid), positions)
        assert torch.allclose(nothing, torch.full_like(nothing, 1 / len(LEGEND)))


def test_disturbed_forest_is_the_forest_without_canopy(patch: LandCoverPatch) -> None:
    split = spatial_split(patch.labels)
    ndvi, clear = patch.ndvi[:, split.holdout].T, ~patch.cloud[:, split.holdout].T
    truth = patch.labels[split.holdout]
    low = disturbed_forest(ndvi, clear, truth, patch.dates, 2017)
    assert low.sum() == 170 and (truth[low] == LEGEND.index("forest")).all()
    summer = year_slice(patch.dates, "2017-06-01", "2017-09-01")
    healthy = ~low & (truth == LEGEND.index("forest"))
    assert np.median(ndvi[low, summer][clear[low, summer]]) < 0.55
    assert np.median(ndvi[healthy, summer][clear[healthy, summer]]) > 0.7


def test_saved_torchscript_equals_eager(
    model: LandCoverTAE, inputs: Inputs, tmp_path: Path
) -> None:
    card = ModelCard(
        "landcover_tae",
        "0",
        "classification",
        "test",
        inputs=[TensorSpec("ndvi", [-1], "")],
        outputs=[TensorSpec("probabilities", [len(LEGEND)], "")],
    )
    save_model(tmp_path, model, card)
    loaded = torch.jit.load(str(tmp_path / MODEL_FILE)).eval()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        assert torch.allclose(loaded(*inputs), model(*inputs), atol=1e-6)
        assert torch.allclose(torch.jit.script(model)(*inputs), model(*inputs), atol=1e-6)


def test_short_training_writes_a_model_and_its_card(tmp_path: Path, inputs: Inputs) -> None:
    logged: list[str] = []
    card = train_landcover(
        DATA, tmp_path, epochs=1, seed=1, threads=1, holdout_columns=80, log=logged.append
    )
    assert any("epoch 1/1" in line for line in logged)
    assert load_card(tmp_path) == card
    assert (tmp_path / "card.md").read_text().startswith("# landcover_tae (version 1)")
    assert [t.name for t in card.inputs] == ["ndvi", "valid", "positions"]
    assert all(t.dims == [-1] and t.dtype == "FP32" for t in card.inputs)
    assert [(t.name, t.dims) for t in card.outputs] == [("probabilities", [len(LEGEND)])]
    assert card.classes == list(LEGEND) and card.task == "classification"
    assert (card.data["pixels_train"], card.data["pixels_gap"]) == (1776, 194)
    assert card.data["pixels_holdout"] == 7975 and card.data["pixels_no_data"] == 155
    for window in ("holdout_2016", "holdout_2017"):
        report = card.metrics[window]
        assert report["samples"] == 7975
        assert 0.0 <= report["overall_accuracy"] <= 1.0 and "kappa" in report
        assert sum(s["support"] for s in report["per_class"].values()) == 7975
    assert card.metrics["cloud_free_dates_per_pixel"]["2017"]["dates"] == 36
    assert card.metrics["diagnostic_disturbed_forest"]["2017"]["without_them"]["samples"] < 7975
    assert 0.3 < card.input_statistics["ndvi"]["mean"] < 0.8
    assert card.training["epochs"] == 1 and card.training["threads"] == 1
    assert card.reproduce.startswith("revisit train landcover")
    scripted = torch.jit.load(str(tmp_path / MODEL_FILE)).eval()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        probabilities = scripted(*inputs)
    assert probabilities.shape == (len(inputs[0]), len(LEGEND))
    assert torch.allclose(probabilities.sum(1), torch.ones(len(probabilities)), atol=1e-5)


def test_committed_model_matches_its_card(patch: LandCoverPatch, inputs: Inputs) -> None:
    model = torch.jit.load(str(COMMITTED / MODEL_FILE)).eval()  # type: ignore[no-untyped-call]
    card = load_card(COMMITTED)
    assert card.name == "landcover_tae" and card.classes == list(LEGEND)
    assert [t.name for t in card.inputs] == ["ndvi", "valid", "positions"]
    with torch.no_grad():
        reference = model(*inputs)
        assert torch.allclose(model(*_pad(inputs, 9, 0.0)), reference, atol=1e-6)
    metrics = evaluate(model, patch, spatial_split(patch.labels).holdout)
    for window in ("holdout_2016", "holdout_2017"):
        for key in ("overall_accuracy", "kappa", "mean_iou"):  # argmax ties aside: equal
            assert metrics[window][key] == pytest.approx(card.metrics[window][key], abs=2e-3)
        assert card.metrics[window]["kappa"] > 0.25  # the baseline (all forest) has 0
    assert card.training["wall_seconds"] < 180


def test_area_fractions_of_class_ids_and_of_probabilities() -> None:
    ids = np.array([[1, 1, 4, 0], [2, 1, 3, 4]])  # forest 3, built-up 2, cropland 1 of 8
    assert area_fractions(ids, LEGEND) == {"tree": 0.375, "built_up": 0.25, "cropland": 0.125}
    probabilities = np.array(
        [[0.1, 0.6, 0.1, 0.1, 0.1], [0.5, 0.0, 0.0, 0.0, 0.5]], dtype=np.float32
    )
    fractions = area_fractions(probabilities, LEGEND)
    assert fractions.keys() == {"tree", "built_up", "cropland"}  # no water in the legend
    assert fractions["tree"] == pytest.approx(0.3)
    assert fractions["built_up"] == pytest.approx(0.3)
    assert fractions["cropland"] == pytest.approx(0.3)
    with_water = area_fractions(np.array([0, 1, 1]), legend=("water", "forest"))
    assert with_water == {"tree": pytest.approx(2 / 3), "water": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="last axis"):
        area_fractions(np.ones((3, 4), np.float32), LEGEND)
    with pytest.raises(ValueError, match="outside"):
        area_fractions(np.array([0, 5]), LEGEND)
    with pytest.raises(ValueError, match="no pixel"):
        area_fractions(np.zeros(0, np.int64), LEGEND)
