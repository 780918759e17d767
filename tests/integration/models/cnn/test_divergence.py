"""Training that diverges stops with a clear error, ends its run FAILED and registers nothing."""
from __future__ import annotations

import dataclasses

import mlflow
import pytest

from genreclf import config as C
from genreclf.entrypoints import train_cnn
from genreclf.models.cnn.training import TrainingDiverged
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking

DATA = {"data": "synthetic:6", "genres": "Rock,Jazz", "cache_size": 32, "experiment": "diverge"}
CNN = {"pretrained": False, "epochs": 2, "image_size": 32, "batch_size": 4, "workers": 0, "tta": False,
       "gradcam_per_genre": 0, "register": True}


def test_nan_losses_fail_the_run_and_register_nothing(workdir):
    sections = C.resolve(None, {**DATA, **CNN}, "data", "cnn")
    # lr=inf is refused by the parameter's rule; an API caller can still hand it to the training loop
    sections["cnn"] = dataclasses.replace(sections["cnn"], lr=float("inf"))
    with pytest.raises(TrainingDiverged, match=r"training diverged in epoch 0: train loss nan"):
        train_cnn.main(C.Resolved("train_cnn", sections))
    (run,) = tracking.search_runs("diverge")
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("TrainingDiverged: training diverged in epoch 0")
    assert registry.registered_model_names() == []
    assert not mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
