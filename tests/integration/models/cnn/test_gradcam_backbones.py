"""Grad-CAM on the backbones other than resnet18 (here, not in the unit tests: building each
randomly initialised model takes seconds)."""
from __future__ import annotations

import numpy as np
import pytest

from genreclf.models.cnn import gradcam
from genreclf.nets import backbones


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "convnext_tiny", "efficientnet_lite0"])
def test_cam_target_layer_of_other_backbones_gives_maps(backbone):
    model = backbones.create_model(backbone, 4, pretrained=False).eval()
    cover = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with gradcam.Explainer(model, backbone, 64) as ex:
        cam = ex([cover], [0])
    assert cam.shape == (1, 64, 64) and np.isfinite(cam).all()
