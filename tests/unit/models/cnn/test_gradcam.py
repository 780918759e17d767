"""Grad-CAM: maps in [0, 1] that follow the evidence, hooks released (logging the galleries to a run:
tests/integration/models/cnn/test_gradcam_galleries.py)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genreclf.models.cnn import gradcam
from genreclf.nets import backbones


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
