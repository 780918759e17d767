"""Grad-CAM: maps in [0, 1] that follow the evidence, hooks released, galleries logged as PNGs."""
from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genreclf.cnn import backbones, gradcam
from genreclf.tracking import runs as tracking


def test_overlay_is_a_cover_sized_uint8_heat_map():
    rgb = np.full((80, 80, 3), 128, np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[:4, :4] = 1.0  # hot top-left quarter
    out = gradcam.overlay(cam, rgb)
    assert out.shape == (80, 80, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[5, 5], out[75, 75])  # hot and cold regions are coloured differently


def test_cam_points_at_the_region_that_decides_the_class():
    """Only the top-left of the last feature map carries evidence (and all of it counts for class 1):
    the map must light up the top-left of the cover - not transposed, flipped or spread out."""
    torch.manual_seed(0)
    model = backbones.create_model("resnet18", 2, pretrained=False)

    class TopLeft(nn.Module):
        def forward(self, x):  # post-ReLU maps (>= 0) kept only in the top-left quarter
            mask = torch.zeros_like(x)
            mask[:, :, : x.shape[2] // 2, : x.shape[3] // 2] = 1
            return x * mask
    model.layer4 = nn.Sequential(model.layer4, TopLeft())
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
    cover = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    layer = backbones.gradcam_target_layer(model, "resnet18")
    with gradcam.Explainer(model, "resnet18", 128) as ex:
        assert len(layer._forward_hooks) == 2  # built once: activation + gradient hook
        cams = ex([cover, cover[::-1].copy()], [1, 1])
    assert len(layer._forward_hooks) == 0  # released on exit
    assert cams.shape == (2, 128, 128) and 0.0 <= cams.min() and cams.max() <= 1.0 + 1e-6
    assert cams[0, :48, :48].mean() > 0.3 and cams[0, 80:, :].max() < 0.05 and cams[0, :, 80:].max() < 0.05


def test_explainer_works_on_a_frozen_backbone_under_inference_mode():
    model = backbones.create_model("resnet18", 4, pretrained=False).eval()
    backbones.freeze(model, "resnet18", "backbone")
    cover = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        overlay = gradcam.explain(model, "resnet18", 64, cover, 2)
    assert overlay.shape == (64, 64, 3) and overlay.dtype == np.uint8


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


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "convnext_tiny"])
def test_cam_target_layer_of_other_backbones_gives_maps(backbone):
    model = backbones.create_model(backbone, 4, pretrained=False).eval()
    cover = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with gradcam.Explainer(model, backbone, 64) as ex:
        cam = ex([cover], [0])
    assert cam.shape == (1, 64, 64) and np.isfinite(cam).all()
