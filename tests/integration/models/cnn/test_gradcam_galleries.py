"""Grad-CAM galleries: one PNG per genre with rows of correct and wrong covers, logged to a run."""
from __future__ import annotations

import mlflow
import numpy as np
from PIL import Image

from genreclf.models.cnn import gradcam
from genreclf.nets import backbones
from genreclf.tracking import runs as tracking


def test_galleries_are_logged_per_genre_with_correct_and_wrong_rows(workdir):
    genres = ["HipHop", "Rock", "Pop"]
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    proba = np.full((9, 3), 0.1)
    proba[np.arange(9), [0, 0, 1, 1, 1, 1, 2, 2, 2]] = 0.8  # two HipHop covers wrong, Pop all right
    right, wrong = gradcam.pick(labels, proba, 0, 4)
    assert list(right) == [0, 1] and list(wrong) == [2]
    model = backbones.create_model("resnet18", 3, pretrained=False).eval()
    tracking.configure("gradcam")
    with tracking.start_run("gallery", "test", "cnn") as run_id:
        figures = gradcam.galleries(model, "resnet18", 64, images, labels, proba, genres, per_genre=2)
        tracking.log_figures(figures)
        paths = list(figures)
    assert paths == [f"gradcam/{g}.png" for g in genres]
    for p in paths:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=p)
        w, h = Image.open(local).size
        assert w > 200 and h > 200
