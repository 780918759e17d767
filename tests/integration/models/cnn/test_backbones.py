"""Every backbone freezes by stage, splits its parameters into head / backbone / no-decay groups and
exposes a spatial layer for Grad-CAM (randomly initialised models: nothing is downloaded)."""
from __future__ import annotations

import pytest
import torch

from genreclf.nets import backbones


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "convnext_tiny", "efficientnet_lite0"])
def test_other_backbones_freeze_by_stage_and_group_parameters(name):
    model = backbones.create_model(name, 4, pretrained=False)
    stages = backbones.spec(name).stages
    frozen = backbones.freeze(model, name, stages[2][0])
    params = [[p for path in paths for p in model.get_submodule(path).parameters()] for _, paths in stages]
    assert len(frozen) >= 3 and not any(p.requires_grad for ps in params[:3] for p in ps)
    assert all(p.requires_grad for ps in params[3:] for p in ps)
    backbones.freeze(model, name, "backbone")
    head = backbones.spec(name).head
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {f"{head}.weight", f"{head}.bias"}
    groups = backbones.param_groups(model, name, lr=1e-3, weight_decay=0.05, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-3 and by_name["backbone"]["lr"] == pytest.approx(1e-4)
    assert all(p.ndim <= 1 or "layer_scale" in n for n, p in model.named_parameters()
               if any(p is q for q in by_name["backbone_no_decay"]["params"]))
    assert by_name["backbone_no_decay"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    cam_out = []
    backbones.gradcam_target_layer(model, name).register_forward_hook(lambda m, i, o: cam_out.append(o))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4) and cam_out[0].ndim == 4  # spatial maps
