"""The registered ``album-genre-boost``: cover bytes in, genre + probabilities out (the shared contract).

Logged as code (``code_models/boost.py``) with the two forests and the SVM pipeline in skops files,
like the RF: loading never unpickles, so the server runs with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import skops.io as skops_io

from genreclf.boost.descriptors import DESCRIPTOR_VERSION, N_DESCRIPTORS, describe_many
from genreclf.boost.model import VoteEnsemble
from genreclf.rf.features import FEATURE_VERSION
from genreclf.serving.contract import CoverModel
from genreclf.serving.rf_model import SKOPS_TRUSTED, load_estimator

# beyond the forest's tree type: the two private classes of a fitted CalibratedClassifierCV
SVM_TRUSTED = ["sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"]


class BoostCoverModel(CoverModel):
    """Covers are decoded at the training cache size first, so a cover gives the descriptors it had in training."""

    CODE_FILE = "boost"  # logged as code: genreclf/serving/code_models/boost.py

    def load_context(self, context) -> None:
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        if meta["descriptor_version"] != DESCRIPTOR_VERSION or meta["n_descriptors"] != N_DESCRIPTORS:
            raise RuntimeError(f"this model was trained on descriptor version {meta['descriptor_version']} "
                               f"but genreclf computes version {DESCRIPTOR_VERSION}; retrain it (train_boost)")
        # the descriptors include the 25 features (models logged before this check carry no feature version)
        if meta.get("feature_version", FEATURE_VERSION) != FEATURE_VERSION:
            raise RuntimeError(f"this model was trained on feature version {meta['feature_version']} "
                               f"but genreclf computes version {FEATURE_VERSION}; retrain it (train_boost)")
        self.genres, self.size = list(meta["genres"]), int(meta["decode_size"])
        if "estimator" in context.artifacts:  # a model logged before the skops files: one joblib pickle
            self.ensemble = load_estimator(context.artifacts["estimator"])
        else:
            features_forest = (load_estimator(context.artifacts["features_forest"], SKOPS_TRUSTED)
                               if "features_forest" in context.artifacts else None)  # two-member models before
            self.ensemble = VoteEnsemble(load_estimator(context.artifacts["forest"], SKOPS_TRUSTED),
                                         load_estimator(context.artifacts["svm"], SVM_TRUSTED), float(meta["c"]),
                                         features_forest)
        for forest in (self.ensemble.forest, self.ensemble.features_forest):
            if forest is not None:  # serving predicts a few covers at a time; threads cost more than they give
                forest.n_jobs = 1

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return self.ensemble.predict_proba(describe_many(covers), len(self.genres))


def write_artifacts(tmp: Path, ensemble: VoteEnsemble, genres: list[str], decode_size: int) -> dict[str, str]:
    estimators = {"forest": ensemble.forest, "svm": ensemble.svm, "features_forest": ensemble.features_forest}
    paths = {name: tmp / f"{name}.skops" for name, est in estimators.items() if est is not None}
    for name, path in paths.items():
        skops_io.dump(estimators[name], path, compression=zipfile.ZIP_DEFLATED)
    paths["meta"] = tmp / "meta.json"
    paths["meta"].write_text(json.dumps({"genres": genres, "decode_size": decode_size, "c": ensemble.c,
                                         "descriptor_version": DESCRIPTOR_VERSION, "n_descriptors": N_DESCRIPTORS,
                                         "feature_version": FEATURE_VERSION}))
    return {k: str(v) for k, v in paths.items()}
