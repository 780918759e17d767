"""Metrics and figures shared by every model, under the same names (``test_accuracy``, ...)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from genreclf.plotting import plt


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, genres: list[str], prefix: str) -> dict[str, float]:
    """Accuracy, macro-F1 and per-genre precision/recall/F1 as a flat dict of metric names."""
    y_pred = np.asarray(proba).argmax(axis=1)
    labels = list(range(len(genres)))
    out = {f"{prefix}_accuracy": accuracy_score(y_true, y_pred),
           f"{prefix}_macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)}
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for k, g in enumerate(genres):
        out[f"{prefix}_precision_{g}"], out[f"{prefix}_recall_{g}"], out[f"{prefix}_f1_{g}"] = p[k], r[k], f[k]
    return {k: float(v) for k, v in out.items()}


def per_genre_table(y_true, y_pred, genres: list[str]) -> pd.DataFrame:
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(genres))), zero_division=0)
    return pd.DataFrame({"genre": genres, "precision": p, "recall": r, "f1": f, "support": s})


def confusion_figure(cm: np.ndarray, genres: list[str], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(1.2 * len(genres) + 3, 1.1 * len(genres) + 2.5))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(genres)), genres, rotation=45, ha="right")
    ax.set_yticks(range(len(genres)), genres)
    for i in range(len(genres)):
        for j in range(len(genres)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


@dataclass
class Evaluation:
    """One split's evaluation: metrics, per-genre table and confusion matrix (counts and figure)."""
    split: str
    metrics: dict[str, float]
    per_genre: pd.DataFrame
    confusion: dict
    figure: Figure


def evaluate_split(split: str, y_true: np.ndarray, proba: np.ndarray, genres: list[str],
                   model_label: str) -> Evaluation:
    """Metrics named ``<split>_accuracy`` ..., the per-genre table and the confusion matrix of one split."""
    metrics = classification_metrics(y_true, proba, genres, split)
    y_pred = np.asarray(proba).argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(genres))))
    acc = metrics[f"{split}_accuracy"]
    return Evaluation(split, metrics, per_genre_table(y_true, y_pred, genres),
                      {"genres": genres, "counts": cm.tolist(), "rows": "true", "cols": "predicted"},
                      confusion_figure(cm, genres, f"{model_label} - {split} (accuracy {acc:.1%})"))
