"""Held-out metrics: overall accuracy, Cohen's kappa, mIoU, per-class F1; RMSE for
regressions. Plain numpy so that a report is the same wherever it is computed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def confusion_matrix(
    truth: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int
) -> npt.NDArray[np.int64]:
    """Rows: true class, columns: predicted class."""
    t = np.asarray(truth, np.int64)
    p = np.asarray(predicted, np.int64)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape} true labels but {p.shape} predictions")
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


def classification_report(
    truth: npt.ArrayLike, predicted: npt.ArrayLike, class_names: Sequence[str]
) -> dict[str, Any]:
    """OA, kappa, mIoU (over classes present in truth or predictions) and per-class scores."""
    n = len(class_names)
    cm = confusion_matrix(truth, predicted, n).astype(np.float64)
    total = cm.sum()
    if total == 0:
        raise ValueError("no sample to evaluate")
    tp = np.diag(cm)
    support, predicted_count = cm.sum(1), cm.sum(0)
    oa = tp.sum() / total
    expected = (support * predicted_count).sum() / total**2
    kappa = (oa - expected) / (1 - expected) if expected < 1 else 1.0
    present = (support + predicted_count) > 0
    union = support + predicted_count - tp
    iou = np.divide(tp, union, out=np.zeros(n), where=union > 0)
    precision = np.divide(tp, predicted_count, out=np.zeros(n), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    return {
        "samples": int(total),
        "overall_accuracy": round(float(oa), 4),
        "kappa": round(float(kappa), 4),
        "mean_iou": round(float(iou[present].mean()), 4),
        "macro_f1": round(float(f1[support > 0].mean()), 4) if (support > 0).any() else 0.0,
        "per_class": {
            name: {
                "support": int(support[i]),
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "iou": round(float(iou[i]), 4),
            }
            for i, name in enumerate(class_names)
            if present[i]
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a classification report (no per-class table)."""
    keys = ("samples", "overall_accuracy", "kappa", "mean_iou", "macro_f1")
    return {key: report[key] for key in keys}


def regression_report(
    truth: npt.NDArray[np.floating[Any]],
    predicted: npt.NDArray[np.floating[Any]],
    names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """RMSE, bias, R² and the truth's range per output variable (columns)."""
    t = np.asarray(truth, np.float64).reshape(len(truth), -1)
    p = np.asarray(predicted, np.float64).reshape(len(predicted), -1)
    if t.shape != p.shape or t.shape[1] != len(names):
        raise ValueError(f"truth {t.shape}, predictions {p.shape}, {len(names)} names")
    out = {}
    for j, name in enumerate(names):
        error = p[:, j] - t[:, j]
        variance = float(t[:, j].var())
        out[name] = {
            "rmse": round(float(np.sqrt((error**2).mean())), 4),
            "bias": round(float(error.mean()), 4),
            "r2": round(1.0 - float((error**2).mean()) / variance, 4) if variance > 0 else 0.0,
            "truth_min": round(float(t[:, j].min()), 4),
            "truth_max": round(float(t[:, j].max()), 4),
        }
    return out
