"""Backbone embeddings computed once, for training only the head (linear probe) in minutes on a CPU.

While the backbone is frozen and in eval mode, its output for a cover never changes, so running it
every epoch is wasted work. We run it once per cover on the eval view and on its horizontal flip
(the flip is the training augmentation and the test-time augmentation of this path), keep the
result on disk keyed by the backbone's weights + image size + covers, and train the head on it.
Tuning trials and resumed runs with the same backbone therefore never recompute it.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from genreclf.data.covers import cache_root
from genreclf.features.embeddings import view_features
from genreclf.models.cnn import distributed
from genreclf.nets import backbones

log = logging.getLogger(__name__)


@contextlib.contextmanager
def headless(model: nn.Module, backbone: str):
    """Temporarily replace the head by Identity so the model returns the head's input features."""
    path = backbones.spec(backbone).head
    head = model.get_submodule(path)
    backbones.set_submodule(model, path, nn.Identity())
    try:
        yield model
    finally:
        backbones.set_submodule(model, path, head)


def weights_key(model: nn.Module, backbone: str, image_size: int, digest: str) -> str:
    h = hashlib.sha256(f"{backbone}|{image_size}|{digest}".encode())
    head = backbones.spec(backbone).head + "."
    for name, t in model.state_dict().items():
        if not name.startswith(head):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def compute(model: nn.Module, backbone: str, images: np.ndarray, image_size: int, device: torch.device,
            autocast, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(N, 2, D) float32 features of each cover and of its horizontal flip."""
    with headless(model, backbone):
        return view_features(model, images, image_size, device, autocast, batch_size, progress)


def cached(model: nn.Module, backbone: str, images: np.ndarray, image_size: int, digest: str,
           device: torch.device, autocast, progress: bool = True) -> np.ndarray:
    """``compute`` through an on-disk cache (atomic writes: a killed run never leaves half a file)."""
    folder = cache_root() / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{backbone}-{weights_key(model, backbone, image_size, digest)[:24]}.npy"
    if path.exists():
        feats = np.load(path)
        if len(feats) == len(images):
            log.info("backbone embeddings from cache %s", path)
            return feats
    feats = compute(model, backbone, images, image_size, device, autocast, progress=progress)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, feats)
    os.replace(tmp, path)
    log.info("computed %s backbone embeddings of %d covers once -> %s", feats.shape[1:], len(feats), path)
    return feats


class EmbeddingDataset(Dataset):
    """Items are (2, D) [view, flipped view]; in training one of the two is drawn per item."""

    def __init__(self, feats: np.ndarray, labels: np.ndarray, training: bool):
        self.feats, self.labels, self.training = torch.from_numpy(feats), torch.from_numpy(labels), training

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        if self.training:  # random flip == choose the flipped embedding (torch RNG: seeded per epoch)
            return self.feats[i, int(torch.randint(2, (1,)))], self.labels[i]
        return self.feats[i], self.labels[i]


def loader(feats: np.ndarray, labels: np.ndarray, batch_size: int, training: bool,
           generator: torch.Generator | None = None) -> DataLoader:
    ds = EmbeddingDataset(feats, labels, training)
    sampler = distributed.train_sampler(ds, generator) if training else None  # torchrun: this rank's shard
    return DataLoader(ds, batch_size=batch_size, shuffle=training and sampler is None, sampler=sampler,
                      generator=generator, drop_last=training and len(sampler or ds) > batch_size)


def views(tta: bool):
    """Evaluation views of a (B, 2, D) batch: the plain embedding, and with TTA its flip too."""
    return (lambda x: [x[:, 0], x[:, 1]]) if tta else (lambda x: [x[:, 0]])
