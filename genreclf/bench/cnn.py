"""How close CNN training runs to its compute bound, and what the cached-embedding probe saves.

``measure_training_efficiency``: training throughput of the real loop (cache -> augmentation ->
loader -> normalise on device -> forward/backward/step, as ``loop.train_one_epoch`` runs it)
against the bare forward + backward + step of the same model on random tensors of the same shape,
which no data pipeline can beat. ``1 - train / bare`` is what loading, augmentation and
bookkeeping cost. ``measure_probe_paths``: a linear probe (``freeze=backbone``) trained on
embeddings computed once versus running the frozen backbone every epoch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from genreclf.config import CNNConfig
from genreclf.data.covers import CoverSet
from genreclf.models.cnn import training
from genreclf.models.cnn.datasets import CoverDataset, image_loader
from genreclf.models.cnn.device import Runtime
from genreclf.models.cnn.loop import Phase, TrainState, train_one_epoch
from genreclf.nets import backbones
from genreclf.nets.transforms import create_transform


def bare_steps(state: TrainState, steps: int) -> float:
    """Images/s of forward + backward + optimizer step on random, already-normalised tensors."""
    cfg, model, rt = state.cfg, state.model, state.runtime
    device, optimizer, criterion = rt.device, state.optimizer, state.criterion
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x
    y = torch.randint(0, model_classes(model, cfg), (cfg.batch_size,), device=device)
    start = time.perf_counter()
    for step in range(steps + 1):
        if step == 1:  # the first step allocates and picks kernels: not timed
            rt.sync()
            start = time.perf_counter()
        with rt.autocast:
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        rt.scaler.scale(loss).backward()
        rt.scaler.step(optimizer)
        rt.scaler.update()
    rt.sync()
    return steps * cfg.batch_size / (time.perf_counter() - start)


def model_classes(model: nn.Module, cfg: CNNConfig) -> int:
    return backbones.head(model, cfg.backbone).out_features


def measure_training_efficiency(covers: CoverSet, cfg: CNNConfig, steps: int = 8, repeats: int = 3) -> dict:
    """Best-of-``repeats`` images/s of the real training loop and of the bare compute, same model and shape."""
    rt = Runtime.create(cfg.device)
    device = rt.device
    torch.manual_seed(cfg.seed)
    model = backbones.create_model(cfg.backbone, len(covers.genres), pretrained=False)  # speed only
    model.to(device, memory_format=torch.channels_last if rt.channels_last else torch.preserve_format).train()
    optimizer = torch.optim.AdamW(backbones.param_groups(model, cfg.backbone, cfg.lr, cfg.weight_decay,
                                                         cfg.backbone_lr_mult), lr=cfg.lr)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    tr = covers.indices("train")
    need = (steps + 1) * cfg.batch_size
    idx = np.resize(tr, max(need, len(tr)))  # enough covers for the timed steps, repeating if few
    ds = CoverDataset(covers.images, covers.labels, idx,
                          create_transform(cfg.image_size, True, cfg.trivial_augment, cfg.aug_scale_min))
    loader = image_loader(ds, cfg, device, training=True, generator=torch.Generator().manual_seed(0))
    warm_up = TrainState(cfg, rt, model, optimizer, lr_scheduler, criterion, steps_per_epoch=1)
    timed = TrainState(cfg, rt, model, optimizer, lr_scheduler, criterion, steps_per_epoch=steps)
    phase = Phase(model, rt.images, lambda x: [x])
    bare, train = [], []
    for _ in range(repeats):
        bare.append(bare_steps(timed, steps))
        # the loop exactly as fit runs it; its images/s excludes the first batch (the loader's start-up)
        train_one_epoch(warm_up, phase, loader, desc="warm-up")
        train.append(train_one_epoch(timed, phase, loader, desc="timed")["images_per_s"])
    best_bare, best_train = max(bare), max(train)
    workers = cfg.workers if cfg.workers >= 0 else loader.num_workers
    return {"backbone": cfg.backbone, "device": str(device), "image_size": cfg.image_size,
            "batch_size": cfg.batch_size, "workers": workers, "steps": steps, "repeats": repeats,
            "threads": torch.get_num_threads(), "bare_images_per_s": best_bare, "train_images_per_s": best_train,
            "overhead": 1.0 - best_train / best_bare, "bare_all": bare, "train_all": train}


@contextlib.contextmanager
def _cold_cache():
    """A fresh, empty cache folder for embeddings, so the first probe really computes them."""
    old = os.environ.get("GENRECLF_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GENRECLF_CACHE"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("GENRECLF_CACHE", None)
            else:
                os.environ["GENRECLF_CACHE"] = old


def measure_probe_paths(covers: CoverSet, cfg: CNNConfig) -> dict:
    """Seconds for a ``freeze=backbone`` fit: embeddings once (cold cache, then warm) vs backbone every epoch."""
    cfg = dataclasses.replace(cfg, freeze="backbone", lp_epochs=0, patience=0)
    out: dict[str, Any] = {"epochs": cfg.epochs, "image_size": cfg.image_size, "backbone": cfg.backbone,
           "train_covers": int(len(covers.indices("train")))}
    with _cold_cache():
        paths = (("embeddings_cold_s", True), ("embeddings_cached_s", True), ("backbone_every_epoch_s", False))
        for label, use in paths:
            start = time.perf_counter()
            result = training.fit(covers, cfg, use_embeddings=use, progress=False)
            out[label] = time.perf_counter() - start
            out[label.replace("_s", "_val_macro_f1")] = result.best_val_macro_f1
    out["speedup_cold"] = out["backbone_every_epoch_s"] / out["embeddings_cold_s"]
    return out
