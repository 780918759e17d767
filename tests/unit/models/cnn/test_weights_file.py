"""The pretrained path, checkable offline: a weights file in torchvision's published layout.

torchvision publishes ImageNet weights as a plain state_dict saved with ``torch.save`` (keys as in
``model.state_dict()``, a 1000-class head), named like ``resnet18-f37072fd.pth``. These tests write
such a file from a randomly initialised torchvision model - no download - and check that it loads
through ``weights_path``, that training starts from it and fine-tunes it, and that files for
another model fail with an error naming the file and the first mismatch.
"""
from __future__ import annotations

import pytest
import torch
import torchvision

from genreclf.errors import UserError
from genreclf.nets import backbones

PUBLISHED = "resnet18-f37072fd.pth"  # torchvision's file name for ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def imagenet_file(tmp_path):
    torch.manual_seed(123)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path / PUBLISHED
    torch.save(state, path)
    return path, state


def test_published_layout_loads_and_head_is_replaced(imagenet_file):
    path, state = imagenet_file
    assert PUBLISHED == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    torch.manual_seed(0)  # a different init: equality below can only come from the file
    model = backbones.create_model("resnet18", 5, pretrained=True, weights_path=str(path))
    own = model.state_dict()
    body = [k for k in state if not k.startswith("fc.")]
    assert len(body) == 120 and all(torch.equal(own[k], state[k]) for k in body)  # incl. BN running stats
    assert model.fc.out_features == 5 and own["fc.weight"].shape == (5, 512)


def test_file_with_wrong_shapes_names_file_and_first_mismatch(imagenet_file, tmp_path):
    path, state = imagenet_file
    wrong = tmp_path / "patched.pth"  # one tensor of another shape (resnet50's 1x1 bottleneck conv)
    torch.save({**state, "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}, wrong)
    with pytest.raises(UserError, match=r"patched\.pth.*does not fit resnet18: 1 tensor\(s\) of another "
                                         r"shape, first 'layer1\.0\.conv1\.weight': \(64, 64, 1, 1\) in the file, "
                                         r"\(64, 64, 3, 3\) expected"):
        backbones.create_model("resnet18", 4, weights_path=str(wrong))


def test_file_with_wrong_keys_names_first_missing_and_foreign_key(imagenet_file, tmp_path):
    path, state = imagenet_file
    wrapped = tmp_path / "dataparallel.pth"  # saved from nn.DataParallel: every key prefixed
    torch.save({f"module.{k}": v for k, v in state.items()}, wrapped)
    with pytest.raises(UserError, match=r"dataparallel\.pth.*does not fit resnet18: 120 tensor\(s\) missing, "
                                         r"first 'conv1\.weight'; the file has keys the model lacks, first "
                                         r"'module\.conv1\.weight'"):
        backbones.create_model("resnet18", 4, weights_path=str(wrapped))
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer3.")}, partial)
    with pytest.raises(UserError, match=r"partial\.pth.*missing, first 'layer3\.0\.conv1\.weight'$"):
        backbones.create_model("resnet18", 4, weights_path=str(partial))
    deeper = tmp_path / "resnet34-b627a593.pth"  # every resnet18 tensor fits, plus blocks resnet18 lacks
    torch.save(torchvision.models.resnet34().state_dict(), deeper)
    with pytest.raises(UserError, match=r"resnet34-b627a593\.pth.*does not fit resnet18: 96 tensor\(s\) the model "
                                         r"lacks .*first 'layer1\.2\.conv1\.weight'"):
        backbones.create_model("resnet18", 4, weights_path=str(deeper))
    (tmp_path / "not_torch.pth").write_bytes(b"hello")
    with pytest.raises(UserError, match=r"not_torch\.pth.*not a readable torch state_dict"):
        backbones.create_model("resnet18", 4, weights_path=str(tmp_path / "not_torch.pth"))
