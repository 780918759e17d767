"""The Random Forest baseline on the 25 CV features, and the ``features`` entry point.

``train_rf`` fits the forest on the train split only (nothing is selected on test), evaluates val
and test under the metric names the CNN runs use, explains itself (impurity and permutation
importances) and registers ``album-genre-rf``: a pyfunc that takes cover images, like the CNN, and
extracts the features inside.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import skops.io as skops_io
from sklearn.ensemble import RandomForestClassifier

from genreclf import RF_MODEL_NAME
from genreclf import metrics as evaluation
from genreclf.config import ConfigError, RFConfig, as_flat_dict
from genreclf.data.covers import load_covers
from genreclf.data.images import as_rgb
from genreclf.rf.features import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    FEATURE_VERSION,
    GROUP_OF,
    WORK,
    extract,
    extract_many,
    features_for,
)
from genreclf.serving.contract import CoverModel, input_example, signature
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)
GROUP_COLOURS = {"colour": "tab:orange", "edges": "tab:blue", "texture": "tab:green", "faces": "tab:red"}


# --- the estimator ---------------------------------------------------------------------------------

def _max_features(value: str):
    v = str(value).strip().lower()
    if v in {"sqrt", "log2"}:
        return v
    if v in {"none", "all", "1.0"}:
        return None
    try:
        number = int(v) if v.isdigit() else float(v)
    except ValueError:
        number = 0
    if not number > 0 or (isinstance(number, float) and number > 1):
        raise ConfigError(f"max_features={value!r}: use sqrt, log2, all, a share in (0, 1] or a count >= 1")
    return number


def make_rf(cfg: RFConfig) -> RandomForestClassifier:
    """An unfitted forest from the ``rf`` section (the tuning helper builds its trials with this too)."""
    weight = str(cfg.class_weight).strip().lower()
    if weight not in {"none", "balanced", "balanced_subsample"}:
        raise ConfigError(f"class_weight={cfg.class_weight!r}: use none, balanced or balanced_subsample")
    if cfg.n_estimators < 1 or cfg.min_samples_leaf < 1 or cfg.max_depth < 0:
        raise ConfigError(f"n_estimators={cfg.n_estimators}, min_samples_leaf={cfg.min_samples_leaf}: "
                          f"must be >= 1; max_depth={cfg.max_depth}: >= 0 (0 = unlimited)")
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


# --- the registered model --------------------------------------------------------------------------

# The one type of a fitted forest skops does not trust by default (checked on every load: a file that
# needs anything else is refused, so loading never runs arbitrary code).
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


def load_estimator(path: str) -> RandomForestClassifier:
    """The fitted forest, from skops (no pickle), or from a joblib file of a model logged before."""
    if path.endswith(".skops"):
        unknown = sorted(set(skops_io.get_untrusted_types(file=path)) - set(SKOPS_TRUSTED))
        if unknown:
            raise RuntimeError(f"{Path(path).name}: refusing to load types {unknown} (not a plain forest)")
        return skops_io.load(path, trusted=SKOPS_TRUSTED)
    # joblib unpickles (runs code): honour MLflow's switch for pickled models (see docs/serving.md)
    if os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").lower() not in {"1", "true"}:
        raise RuntimeError(f"{Path(path).name} is a pickle and MLFLOW_ALLOW_PICKLE_DESERIALIZATION is off; "
                           f"re-register the model (genreclf train_rf)")
    return joblib.load(path)


class RFCoverModel(CoverModel):
    """``album-genre-rf``: cover images in, genre + probabilities out; features extracted inside.

    Artifacts: the fitted forest, per-genre feature means/stds on the train split and the
    importances, which the demo shows next to a cover's own features.
    """

    CODE_FILE = "rf"  # logged as code: genreclf/serving/code_models/rf.py

    def load_context(self, context) -> None:
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        if meta["feature_names"] != FEATURE_NAMES or meta["feature_version"] != FEATURE_VERSION:
            raise RuntimeError(f"this model was trained on feature version {meta['feature_version']} "
                               f"but genreclf computes version {FEATURE_VERSION}; retrain it")
        self.genres, self.size = meta["genres"], int(meta["decode_size"])
        self.estimator = load_estimator(context.artifacts["estimator"])
        self.estimator.n_jobs = 1  # serving predicts a few covers at a time; threads cost more than they give
        stats = pd.read_csv(context.artifacts["feature_stats"], index_col=["stat", "genre"])
        self.genre_means, self.genre_stds = stats.loc["mean"], stats.loc["std"]
        self.importance_table = pd.read_csv(context.artifacts["importances"], index_col="feature")

    @property
    def importances(self) -> pd.Series:
        """Impurity importances (sum 1) by feature, largest first."""
        return self.importance_table["impurity"].sort_values(ascending=False)

    def features(self, rgb) -> dict[str, float]:
        """The 25 features of one cover (RGB array or bytes), computed as at prediction time."""
        return dict(zip(FEATURE_NAMES, extract(as_rgb(rgb, self.size)).tolist()))

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return predict_proba(self.estimator, extract_many(covers, progress=False), len(self.genres))


# --- entry points ----------------------------------------------------------------------------------

def _split_xy(covers, table: pd.DataFrame, split: str):
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
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
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
    import matplotlib.pyplot as plt
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


def features_main(resolved) -> dict:
    """Entry point ``features``: extract (or reuse) the feature table; log it and per-genre plots."""
    data = resolved.sections["data"]
    tracking.configure(data.experiment)
    covers = load_covers(data)
    with tracking.start_run(f"features-{covers.digest[:8]}", "features", "features") as run_id:
        tracking.log_config(resolved)
        tracking.log_new_params({**as_flat_dict(data), "feature_version": FEATURE_VERSION, "work_size": WORK})
        tracking.log_coverset(covers)
        start = time.perf_counter()
        table = features_for(covers)
        seconds = time.perf_counter() - start
        tracking.log_metrics({"features_seconds": seconds, "n_features": len(FEATURE_NAMES)})
        full = table.reset_index()
        full.insert(1, "genre", [covers.genres[k] for k in covers.labels])
        full.insert(2, "split", covers.split)
        tracking.log_table(full, "features/features.parquet")
        tracking.log_table(full.groupby("genre")[FEATURE_NAMES].mean().reset_index(), "features/genre_means.csv")
        tracking.log_json({n: {"group": GROUP_OF[n]} for n in FEATURE_NAMES}, "features/feature_groups.json")
        for group in FEATURE_GROUPS:
            tracking.log_figure(distribution_figure(table, covers.labels, covers.genres, group),
                                f"features/dist_{group}.png")
    log.info("features of %d covers in %.1fs (run %s)", len(covers), seconds, run_id)
    return {"run_id": run_id, "n_covers": len(covers), "features_seconds": seconds}


def train_main(resolved) -> dict:
    """Entry point ``train_rf``: fit on train, evaluate val and test, log everything, register."""
    data, cfg = resolved.sections["data"], resolved.sections["rf"]
    make_rf(cfg)  # validate the parameters before any expensive work
    tracking.configure(data.experiment)
    covers = load_covers(data)
    name = f"rf-n{cfg.n_estimators}-d{cfg.max_depth or 'max'}"
    with tracking.start_run(name, "train_rf", "rf") as run_id:
        tracking.log_config(resolved)
        tracking.log_new_params({**as_flat_dict(data, cfg), "feature_version": FEATURE_VERSION, "work_size": WORK})
        tracking.log_coverset(covers)
        start = time.perf_counter()
        table = features_for(covers)
        (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = (_split_xy(covers, table, s) for s in ("train", "val", "test"))
        t_fit = time.perf_counter()
        model = fit_rf(X_tr, y_tr, cfg)
        tracking.log_metrics({"features_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                              "train_covers": len(y_tr)})
        n_genres = len(covers.genres)
        metrics = {**evaluation.log_evaluation("val", y_va, predict_proba(model, X_va, n_genres), covers.genres, name),
                   **evaluation.log_evaluation("test", y_te, predict_proba(model, X_te, n_genres), covers.genres, name)}
        importances = importance_table(model, X_va, y_va, cfg.seed)
        tracking.log_table(importances, "importances/feature_importances.csv")
        tracking.log_figure(importance_figure(importances), "importances/feature_importances.png")

        tags = {**{k: round(metrics[k], 4) for k in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")},
                "data_digest": covers.digest[:20], "genres": ",".join(covers.genres),
                "git_commit": tracking.git_commit(), "source_run_id": run_id, "model_family": "rf"}
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = _model_artifacts(Path(tmp), model, importances, table, covers, data.cache_size)
            example = input_example([covers.images[i] for i in covers.indices("test")[:2]])
            model_uri, version = tracking.log_pyfunc(
                RFCoverModel(), artifacts=artifacts, input_example=example, signature=signature(covers.genres),
                registered_name=RF_MODEL_NAME if cfg.register else None, tags=tags)
        if version is not None:
            registry.mark_challenger(RF_MODEL_NAME, version, tags)
    log.info("%s: val accuracy %.3f, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)", name,
             metrics["val_accuracy"], metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, **metrics}


def _model_artifacts(tmp: Path, model, importances: pd.DataFrame, table: pd.DataFrame, covers,
                     decode_size: int) -> dict[str, str]:
    """Write what the pyfunc needs next to the forest: genres, per-genre train stats, importances."""
    train = covers.indices("train")
    frame = table.iloc[train].assign(genre=[covers.genres[k] for k in covers.labels[train]])
    stats = pd.concat({"mean": frame.groupby("genre")[FEATURE_NAMES].mean(),
                       "std": frame.groupby("genre")[FEATURE_NAMES].std(ddof=0)}, names=["stat", "genre"])
    stats = stats.reindex(pd.MultiIndex.from_product([["mean", "std"], covers.genres], names=["stat", "genre"]))
    paths = {"estimator": tmp / "random_forest.skops", "feature_stats": tmp / "feature_stats.csv",
             "importances": tmp / "importances.csv", "meta": tmp / "meta.json"}
    skops_io.dump(model, paths["estimator"], compression=zipfile.ZIP_DEFLATED)
    stats.to_csv(paths["feature_stats"])
    importances.to_csv(paths["importances"], index=False)
    # decode_size: the cover cache size the forest was trained at; serving decodes to it first, so a
    # cover gives exactly the features it had in training
    paths["meta"].write_text(json.dumps({"genres": covers.genres, "decode_size": decode_size, "work_size": WORK,
                                         "feature_names": FEATURE_NAMES, "feature_version": FEATURE_VERSION}))
    return {k: str(v) for k, v in paths.items()}
