"""Train / eval presets for the CNN, on uint8 covers straight from the decoded-cover cache.

The presets stay in uint8 (cheap to augment, 4x less to copy to the GPU); ``normalize`` turns a
whole batch into ImageNet-normalised floats on the device, in the model's memory format - the
same split as timm's prefetching loader. ``create_transform(..., normalize=True)`` gives the
all-in-one per-image pipeline for code that wants it.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: what the pretrained backbones expect
STD = (0.229, 0.224, 0.225)


def create_transform(image_size: int, is_training: bool, trivial_augment: bool = True,
                     aug_scale_min: float = 0.5, normalize: bool = False) -> v2.Compose:
    """Per-image pipeline: (3, S, S) uint8 tensor -> (3, image_size, image_size) uint8 (or float)."""
    if is_training:
        ops = [v2.RandomResizedCrop(image_size, scale=(aug_scale_min, 1.0), antialias=True),
               v2.RandomHorizontalFlip()]
        if trivial_augment:
            ops.append(v2.TrivialAugmentWide())
    else:
        ops = [v2.Resize((image_size, image_size), antialias=True)]  # covers are square: no crop
    if normalize:
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    return v2.Compose(ops)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor (a view when possible)."""
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # memory-mapped cache / decoded request: torch wants its own copy
        image = image.copy()
    return torch.from_numpy(image).permute(2, 0, 1)


def normalize(batch: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """(N, 3, H, W) uint8 on any device -> normalised float32, optionally channels-last."""
    mean = torch.tensor(MEAN, device=batch.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=batch.device).view(1, 3, 1, 1) * 255
    out = (batch.float() - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out



def flip_views(x: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The test-time augmentation views of a batch: itself and, with ``tta``, its horizontal flip."""
    return [x, x.flip(-1)] if tta else [x]



def mean_softmax(model: torch.nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Class probabilities (float32) averaged over the views of one batch."""
    return sum(model(v).float().softmax(1) for v in views) / len(views)
