"""Covers of the decoded cache as a torch dataset, and the loaders that feed the training loop."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genreclf.config import CNNConfig
from genreclf.models.cnn import distributed
from genreclf.nets.transforms import to_chw


class CoverDataset(Dataset):
    """Covers ``index`` of the decoded cache (no copy of the images), through a uint8 transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray, transform):
        self.images, self.labels, self.index, self.transform = images, labels, np.asarray(index), transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        j = self.index[i]
        return self.transform(to_chw(self.images[j])), int(self.labels[j])


def image_loader(dataset: Dataset, cfg: CNNConfig, device: torch.device, training: bool,
                 generator: torch.Generator | None = None) -> DataLoader:
    # CPU: augmenting in the main process beats worker processes competing with the math for 2-8 cores
    workers = cfg.workers if cfg.workers >= 0 else (min(8, (os.cpu_count() or 2) - 1) if device.type == "cuda" else 0)
    sampler = distributed.train_sampler(dataset, generator) if training else None  # torchrun: this rank's shard
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=training and sampler is None, sampler=sampler,
                      generator=generator, num_workers=workers, pin_memory=device.type == "cuda",
                      prefetch_factor=4 if workers else None,
                      drop_last=training and len(sampler or dataset) > cfg.batch_size)
