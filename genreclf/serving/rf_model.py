"""The registered Random Forest (``album-genre-rf``): cover images in, genre + probabilities out,
the 25 CV features extracted inside - the same contract as the CNN."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import skops.io as skops_io
from sklearn.ensemble import RandomForestClassifier

from genreclf.data.covers import CoverSet
from genreclf.data.images import as_rgb
from genreclf.rf import forest
from genreclf.rf.features import FEATURE_NAMES, FEATURE_VERSION, WORK, extract, extract_many
from genreclf.serving.contract import CoverModel

# The one type of a fitted forest skops does not trust by default (checked on every load: a file that
# needs anything else is refused, so loading never runs arbitrary code).
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


def load_estimator(path: str, trusted: list[str] = SKOPS_TRUSTED):
    """A fitted estimator from skops (no pickle: only the ``trusted`` types beyond skops' defaults), or
    from a joblib file of a model logged before."""
    if path.endswith(".skops"):
        unknown = sorted(set(skops_io.get_untrusted_types(file=path)) - set(trusted))
        if unknown:
            raise RuntimeError(f"{Path(path).name}: refusing to load types {unknown} (not the expected estimator)")
        return skops_io.load(path, trusted=trusted)
    # joblib unpickles (runs code): honour MLflow's switch for pickled models (see docs/serving.md)
    if os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").lower() not in {"1", "true"}:
        raise RuntimeError(f"{Path(path).name} is a pickle and MLFLOW_ALLOW_PICKLE_DESERIALIZATION is off; "
                           f"re-register the model")
    return joblib.load(path)


class RFCoverModel(CoverModel):
    """Artifacts: the fitted forest, per-genre feature means/stds on the train split and the
    importances, which the demo shows next to a cover's own features."""

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
        return dict(zip(FEATURE_NAMES, extract(as_rgb(rgb, self.size)).tolist(), strict=True))

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return forest.predict_proba(self.estimator, extract_many(covers, progress=False), len(self.genres))


def write_artifacts(folder: Path, model: RandomForestClassifier, importances: pd.DataFrame, table: pd.DataFrame,
                    covers: CoverSet, decode_size: int) -> dict[str, str]:
    """Write what the pyfunc needs next to the forest: genres, per-genre train stats, importances."""
    train = covers.indices("train")
    frame = table.iloc[train].assign(genre=[covers.genres[k] for k in covers.labels[train]])
    stats = pd.concat({"mean": frame.groupby("genre")[FEATURE_NAMES].mean(),
                       "std": frame.groupby("genre")[FEATURE_NAMES].std(ddof=0)}, names=["stat", "genre"])
    stats = stats.reindex(pd.MultiIndex.from_product([["mean", "std"], covers.genres], names=["stat", "genre"]))
    paths = {"estimator": folder / "random_forest.skops", "feature_stats": folder / "feature_stats.csv",
             "importances": folder / "importances.csv", "meta": folder / "meta.json"}
    skops_io.dump(model, paths["estimator"], compression=zipfile.ZIP_DEFLATED)
    stats.to_csv(paths["feature_stats"])
    importances.to_csv(paths["importances"], index=False)
    # decode_size: the cover cache size the forest was trained at; serving decodes to it first, so a
    # cover gives exactly the features it had in training
    paths["meta"].write_text(json.dumps({"genres": covers.genres, "decode_size": decode_size, "work_size": WORK,
                                         "feature_names": FEATURE_NAMES, "feature_version": FEATURE_VERSION}))
    return {k: str(v) for k, v in paths.items()}
