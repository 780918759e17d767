"""The registered ``album-genre-boost``: cover bytes in, genre + probabilities out (the shared contract)."""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np

from genreclf.boost.descriptors import DESCRIPTOR_VERSION, N_DESCRIPTORS, describe_many
from genreclf.serving.contract import CoverModel


class BoostCoverModel(CoverModel):
    """Covers are decoded at the training cache size first, so a cover gives the descriptors it had in training."""

    def load_context(self, context) -> None:
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        if meta["descriptor_version"] != DESCRIPTOR_VERSION or meta["n_descriptors"] != N_DESCRIPTORS:
            raise RuntimeError(f"this model was trained on descriptor version {meta['descriptor_version']} "
                               f"but genreclf computes version {DESCRIPTOR_VERSION}; retrain it (train_boost)")
        self.genres, self.size = list(meta["genres"]), int(meta["decode_size"])
        self.ensemble = joblib.load(context.artifacts["estimator"])
        self.ensemble.forest.n_jobs = 1  # serving predicts a few covers at a time; threads cost more than they give

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return self.ensemble.predict_proba(describe_many(covers), len(self.genres))


def write_artifacts(tmp: Path, ensemble, genres: list[str], decode_size: int) -> dict[str, str]:
    paths = {"estimator": tmp / "ensemble.joblib", "meta": tmp / "meta.json"}
    joblib.dump(ensemble, paths["estimator"], compress=3)
    paths["meta"].write_text(json.dumps({"genres": genres, "decode_size": decode_size, "c": ensemble.c,
                                         "descriptor_version": DESCRIPTOR_VERSION, "n_descriptors": N_DESCRIPTORS}))
    return {k: str(v) for k, v in paths.items()}
