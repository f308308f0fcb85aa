"""Drift monitoring: the measures, the metrics, and the alert on real data."""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from revisit_cli.stack import REPO_ROOT
from revisit_inference.drift import (
    DriftMetrics,
    Reference,
    class_psi,
    normalised_entropy,
    s2_reference,
    shift_sigma,
)
from revisit_models.pixelset_data import load_dataset
from tests.model_inputs import latest_version

CARD = latest_version(REPO_ROOT / "data" / "models" / "psetae_cropland_s1s2") / "card.json"
RULES = REPO_ROOT / "infra" / "prometheus" / "rules" / "drift.yml"
METRIC = "revisit_inference_input_shift_max_sigma"


def test_shift_is_in_training_standard_deviations() -> None:
    reference = Reference.of(["a", "b"], [0.1, 0.3], [0.05, 0.1])
    values = np.array([[0.1, 0.5], [0.2, 0.3]])  # means 0.15, 0.4
    assert shift_sigma(values, reference) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="do not match 2 features"):
        shift_sigma(np.zeros((3, 3)), reference)


def test_entropy_and_psi_against_hand_values() -> None:
    entropy = normalised_entropy(
        np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    )
    assert entropy == pytest.approx([0.0, 1.0, math.log(2) / math.log(3)], abs=1e-6)
    classes = ["crop", "other"]
    assert class_psi(np.array([0, 0, 1, 1]), {"crop": 0.5, "other": 0.5}, classes) == pytest.approx(
        0
    )
    # 90 % crop predicted where training had 50 %: (0.4 ln 1.8) + (-0.4 ln 0.2)
    psi = class_psi(np.array([0] * 9 + [1]), {"crop": 0.5, "other": 0.5}, classes)
    assert psi == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2), abs=1e-6)


def test_a_pass_is_compared_with_its_period_of_the_season() -> None:
    statistics = json.loads(CARD.read_text())["input_statistics"]
    june = s2_reference(statistics, 215.0)  # 2021-06-03 in a season from 2020-11-01
    period = statistics["s2_by_period"]["periods"]["7"]
    assert june.mean.tolist() == period["mean"]
    season = s2_reference(statistics, None)
    assert season.mean.tolist() == statistics["s2"]["mean"]
    # a period the training season never had falls back to the whole season
    assert s2_reference(statistics, 9999.0).mean.tolist() == statistics["s2"]["mean"]


def test_metrics_have_bounded_labels() -> None:
    registry = CollectorRegistry()
    metrics = DriftMetrics(registry)
    reference = Reference.of(["B04", "B08"], [0.05, 0.3], [0.02, 0.1])
    metrics.observe_inputs("m", "aoi-1", np.array([[0.09, 0.3]]), reference)
    out = metrics.observe_predictions(
        "m",
        "aoi-1",
        np.array([[0.9, 0.1], [0.6, 0.4]]),
        ["crop", "other"],
        {"crop": 0.5, "other": 0.5},
    )
    assert registry.get_sample_value(
        "revisit_inference_input_shift_sigma", {"model": "m", "aoi": "aoi-1", "feature": "B04"}
    ) == pytest.approx(2.0)
    assert registry.get_sample_value(
        "revisit_inference_input_shift_max_sigma", {"model": "m", "aoi": "aoi-1"}
    ) == pytest.approx(2.0)
    assert (
        registry.get_sample_value(
            "revisit_inference_predicted_classes_total", {"model": "m", "class": "crop"}
        )
        == 2
    )
    assert out["confidence"] == pytest.approx(0.75)
    labels = {
        tuple(sorted(sample.labels)) for family in registry.collect() for sample in family.samples
    }
    assert all(set(names) <= {"model", "aoi", "feature", "class", "le"} for names in labels)


def _shift_per_pass(directory: Path, factor: float) -> list[float]:
    """Max input shift of each real pass of the cube, through the service's metrics."""
    statistics = json.loads(CARD.read_text())["input_statistics"]
    data = load_dataset(directory)
    metrics, out = DriftMetrics(CollectorRegistry()), []
    for t, day in enumerate(data.positions[0]):
        values = np.concatenate([x[t].T for x in data.pixels])
        values = values[(values != 0).any(axis=1)] * factor
        if len(values):  # 2020-12 and 2021-01 are empty
            shift = metrics.observe_inputs("m", "a", values, s2_reference(statistics, float(day)))
            out.append(float(np.abs(shift).max()))
    return out


def test_the_drift_alert_fires_for_the_shifted_patch_only(
    worldcereal_datasets: Path, tmp_path: Path
) -> None:
    """The real WorldCereal passes, as is and with reflectances x1.3, through the rules."""
    real = _shift_per_pass(worldcereal_datasets / "cube", 1.0)
    shifted = _shift_per_pass(worldcereal_datasets / "cube", 1.3)
    assert len(real) == len(shifted) == 10
    assert max(real) < 0.3 and min(shifted) > 1.3
    rule = next(
        r
        for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
        if r.get("alert") == "RevisitInputDrift"
    )
    shifted_aoi, model = "hesbaye-x1.3", "psetae_cropland_s1s2"
    expected = {
        "labels": {"severity": "warning", "model": model, "aoi": shifted_aoi},
        "annotations": {
            "summary": f"{model} inputs on AOI {shifted_aoi} are {shifted[-1]:.1f} training std "
            "from its training data",
            "description": rule["annotations"]["description"],
        },
    }
    # one pass every 5 minutes (a compressed season): the gauge holds the last pass
    series = textwrap.dedent(
        f"""\
        rule_files: [{RULES}]
        evaluation_interval: 1m
        tests:
          - interval: 5m
            input_series:
              - series: '{METRIC}{{model="{model}", aoi="hesbaye"}}'
                values: "{" ".join(f"{v:.3f}" for v in real)}"
              - series: '{METRIC}{{model="{model}", aoi="{shifted_aoi}"}}'
                values: "{" ".join(f"{v:.3f}" for v in shifted)}"
            alert_rule_test:
              - eval_time: 45m
                alertname: RevisitInputDrift
                exp_alerts: [{{exp_labels: {json.dumps(expected["labels"])},
                               exp_annotations: {json.dumps(expected["annotations"])}}}]
        """
    )
    test_file = tmp_path / "drift_real_test.yml"
    test_file.write_text(series)
    result = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
