"""The Random Forest on the 25 hand-crafted features, as a family: fit, load, evaluate.

It fits on the train split only (nothing is selected on test) and explains itself with impurity
and permutation importances; the predictor extracts the features inside, so it takes covers like
every other family.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from genreclf.config import RFConfig
from genreclf.data.covers import CoverSet
from genreclf.data.images import as_rgb
from genreclf.features.cover25 import FEATURE_NAMES, FEATURE_VERSION, WORK, extract, extract_many, features_for
from genreclf.models.family import Trained
from genreclf.models.persist import FOREST_TYPES, load_estimator, save_estimator
from genreclf.models.rf.forest import fit_rf, importance_figure, importance_table, predict_proba, split_xy


def run_name(cfg: RFConfig) -> str:
    return f"rf-n{cfg.n_estimators}-d{cfg.max_depth or 'max'}"


def fit(covers: CoverSet, cfg: RFConfig, fit_splits: tuple[str, ...] = ("train",)) -> Trained:
    """Fit on ``fit_splits`` (train; a tuning refit passes train + val) and predict the held-out splits.

    The importances are measured on the first held-out split (val, or test after a refit: they explain
    the final model after its one evaluation; nothing is chosen with them)."""
    start = time.perf_counter()
    table = features_for(covers)
    X_fit = np.concatenate([split_xy(covers, table, s)[0] for s in fit_splits])
    y_fit = np.concatenate([split_xy(covers, table, s)[1] for s in fit_splits])
    held_out = [s for s in ("val", "test") if s not in fit_splits]
    t_fit = time.perf_counter()
    model = fit_rf(X_fit, y_fit, cfg)
    k = len(covers.genres)
    proba = {s: predict_proba(model, split_xy(covers, table, s)[0], k) for s in held_out}
    importances = importance_table(model, *split_xy(covers, table, held_out[0]), cfg.seed)
    stats = genre_stats(covers, table)

    def write(folder: Path) -> dict[str, str]:
        paths = {"estimator": save_estimator(model, folder / "random_forest.skops"),
                 "feature_stats": str(folder / "feature_stats.csv"), "importances": str(folder / "importances.csv")}
        stats.to_csv(paths["feature_stats"])
        importances.to_csv(paths["importances"], index=False)
        return paths

    return Trained(
        proba=proba,
        write=write, meta={"feature_names": FEATURE_NAMES, "feature_version": FEATURE_VERSION, "work_size": WORK},
        params={"feature_version": FEATURE_VERSION, "work_size": WORK},
        metrics={"features_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                 "train_covers": float(len(y_fit))},
        tables={"importances/feature_importances.csv": importances},
        figures={"importances/feature_importances.png": importance_figure(importances)})


def genre_stats(covers: CoverSet, table: pd.DataFrame) -> pd.DataFrame:
    """Per-genre mean and std of each feature on the train split (the demo shows a cover against them)."""
    train = covers.indices("train")
    frame = table.iloc[train].assign(genre=[covers.genres[k] for k in covers.labels[train]])
    stats = pd.concat({"mean": frame.groupby("genre")[FEATURE_NAMES].mean(),
                       "std": frame.groupby("genre")[FEATURE_NAMES].std(ddof=0)}, names=["stat", "genre"])
    return stats.reindex(pd.MultiIndex.from_product([["mean", "std"], covers.genres], names=["stat", "genre"]))


class ForestPredictor:
    """The fitted forest, per-genre train statistics and importances (the demo shows them)."""

    def __init__(self, artifacts: dict[str, str], meta: dict):
        if meta["feature_names"] != FEATURE_NAMES or meta["feature_version"] != FEATURE_VERSION:
            raise RuntimeError(f"this model was trained on feature version {meta['feature_version']} "
                               f"but genreclf computes version {FEATURE_VERSION}; retrain it (train_rf)")
        self.genres, self.size = list(meta["genres"]), int(meta["decode_size"])
        self.estimator = load_estimator(artifacts["estimator"], FOREST_TYPES)
        self.estimator.n_jobs = 1  # serving predicts a few covers at a time; threads cost more than they give
        stats = pd.read_csv(artifacts["feature_stats"], index_col=["stat", "genre"])
        self.genre_means, self.genre_stds = stats.loc["mean"], stats.loc["std"]
        self.importance_table = pd.read_csv(artifacts["importances"], index_col="feature")

    @property
    def importances(self) -> pd.Series:
        """Impurity importances (sum 1) by feature, largest first."""
        return self.importance_table["impurity"].sort_values(ascending=False)

    def features(self, rgb) -> dict[str, float]:
        """The 25 features of one cover (RGB array or bytes), computed as at prediction time."""
        return dict(zip(FEATURE_NAMES, extract(as_rgb(rgb, self.size)).tolist(), strict=True))

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return predict_proba(self.estimator, extract_many(covers, progress=False), len(self.genres))


def load(artifacts: dict[str, str], meta: dict) -> ForestPredictor:
    return ForestPredictor(artifacts, meta)


def cover25_matrix(covers: CoverSet) -> np.ndarray:
    """``evaluate``'s input: the 25 features of every cover, in cover order."""
    return features_for(covers, progress=False).to_numpy()


def evaluate_rf(view, inputs: dict[str, np.ndarray], seed: int, options) -> np.ndarray:
    """``evaluate``'s runner: the project's RF defaults, fitted on the split's train covers."""
    table, tr, te = inputs["cover25"], view.indices("train"), view.indices("test")
    model = fit_rf(table[tr], view.labels[tr], RFConfig(seed=seed, register=False))
    return predict_proba(model, table[te], len(view.genres))
