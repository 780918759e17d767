"""The Random Forest baseline on the 25 CV features: the estimator, its explanations and plots.

The ``train_rf`` entry point fits it on the train split only (nothing is selected on test); the
registered pyfunc that wraps it lives in ``genreclf.serving.rf_model``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from sklearn.ensemble import RandomForestClassifier

from genreclf.config import RFConfig
from genreclf.data.covers import CoverSet
from genreclf.features.cover25 import FEATURE_GROUPS, FEATURE_NAMES, GROUP_OF
from genreclf.plotting import plt

GROUP_COLOURS = {"colour": "tab:orange", "edges": "tab:blue", "texture": "tab:green", "faces": "tab:red"}


# --- the estimator ---------------------------------------------------------------------------------

def _max_features(value: str):
    """sklearn's ``max_features`` for RFConfig.max_features (a value its rule in config admitted)."""
    if value in ("sqrt", "log2"):
        return value
    if value == "all":
        return None
    return int(value) if value.isdigit() else float(value)


def make_rf(cfg: RFConfig) -> RandomForestClassifier:
    """An unfitted forest from the ``rf`` section (the tuning helper builds its trials with this too)."""
    weight = cfg.class_weight
    return RandomForestClassifier(
        n_estimators=cfg.n_estimators, max_depth=cfg.max_depth or None, min_samples_leaf=cfg.min_samples_leaf,
        max_features=_max_features(cfg.max_features), class_weight=None if weight == "none" else weight,
        random_state=cfg.seed, n_jobs=cfg.n_jobs)


def fit_rf(X: np.ndarray, y: np.ndarray, cfg: RFConfig) -> RandomForestClassifier:
    return make_rf(cfg).fit(X, y)


def predict_proba(model: RandomForestClassifier, X: np.ndarray, n_genres: int) -> np.ndarray:
    """(N, n_genres) probabilities, with a column for every genre even if the forest never saw one."""
    out = np.zeros((len(X), n_genres))
    out[:, model.classes_.astype(int)] = model.predict_proba(X)
    return out


# --- explanations and plots ----------------------------------------------------------------------

def split_xy(covers: CoverSet, table: pd.DataFrame, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of one split, from the covers' feature table."""
    idx = covers.indices(split)
    return table.to_numpy()[idx], covers.labels[idx]


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """sklearn's f1_score(average="macro", zero_division=0) over all classes, without its overhead."""
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2 TP + FP + FN
    return float(np.mean(np.where(denom > 0, 2 * np.diag(cm) / np.maximum(denom, 1), 0.0)))


def permutation_drops(model, X: np.ndarray, y: np.ndarray, seed: int, repeats: int = 5) -> np.ndarray:
    """(n_features, repeats) drop in macro-F1 when one feature's column is shuffled.

    What sklearn's permutation_importance computes, but all repeats of a feature go through one
    predict call: 25 calls instead of 125, which matters on the small splits of tuning and tests.
    """
    rng = np.random.default_rng(seed)
    k = int(max(y.max(), model.classes_.max())) + 1
    base = macro_f1(y, model.predict(X), k)
    drops = np.zeros((X.shape[1], repeats))
    for j in range(X.shape[1]):
        shuffled = np.repeat(X[None], repeats, axis=0)
        for r in range(repeats):
            shuffled[r, :, j] = X[rng.permutation(len(X)), j]
        pred = model.predict(shuffled.reshape(-1, X.shape[1])).reshape(repeats, len(X))
        drops[j] = [base - macro_f1(y, p, k) for p in pred]
    return drops


def importance_table(model, X_val, y_val, seed: int) -> pd.DataFrame:
    drops = permutation_drops(model, X_val, y_val, seed)
    return pd.DataFrame({"feature": FEATURE_NAMES, "group": [GROUP_OF[n] for n in FEATURE_NAMES],
                         "impurity": model.feature_importances_, "permutation_mean": drops.mean(axis=1),
                         "permutation_std": drops.std(axis=1)}).sort_values("permutation_mean", ascending=False)


def importance_figure(table: pd.DataFrame):
    table = table.sort_values("impurity")
    colours = [GROUP_COLOURS[g] for g in table["group"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 8), sharey=True)
    a.barh(table["feature"], table["impurity"], color=colours)
    a.set_title("impurity importance (train)")
    b.barh(table["feature"], table["permutation_mean"], xerr=table["permutation_std"], color=colours)
    b.set_title("permutation importance on val (drop in macro-F1)")
    b.axvline(0, color="grey", lw=0.8)
    fig.legend(handles=[Patch(color=c, label=g) for g, c in GROUP_COLOURS.items()], loc="upper center", ncol=4)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def distribution_figure(table: pd.DataFrame, labels: np.ndarray, genres: list[str], group: str):
    """Per-genre box plots of one feature group."""
    names = FEATURE_GROUPS[group]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.boxplot([table[name].to_numpy()[labels == k] for k in range(len(genres))], showfliers=False)
        ax.set_xticks(range(1, len(genres) + 1), genres, rotation=45, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{group} features by genre")
    fig.tight_layout()
    return fig
