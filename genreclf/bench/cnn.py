"""How close CNN training runs to its compute bound, and what the cached-embedding probe saves.

``measure_training_efficiency``: training throughput of the real loop (cache -> augmentation ->
loader -> normalise on device -> forward/backward/step, as ``cnn.train_one_epoch`` runs it)
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

import numpy as np
import torch
from torch import nn

from genreclf.cnn import backbones
from genreclf.cnn import fit as cnn
from genreclf.cnn.transforms import create_transform, normalize
from genreclf.config import CNNConfig


def _bare(model, optimizer, criterion, cfg: CNNConfig, device, autocast, scaler, steps: int) -> float:
    """Images/s of forward + backward + optimizer step on random, already-normalised tensors."""
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x
    y = torch.randint(0, model_classes(model, cfg), (cfg.batch_size,), device=device)
    start = None
    for step in range(steps + 1):
        if step == 1:  # the first step allocates and picks kernels: not timed
            _sync(device)
            start = time.perf_counter()
        with autocast:
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - start)


def model_classes(model: nn.Module, cfg: CNNConfig) -> int:
    return backbones.head(model, cfg.backbone).out_features


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_training_efficiency(covers, cfg: CNNConfig, steps: int = 8, repeats: int = 3) -> dict:
    """Best-of-``repeats`` images/s of the real training loop and of the bare compute, same model and shape."""
    device = cnn.pick_device(cfg.device)
    autocast, scaler = cnn.precision(device)
    torch.manual_seed(cfg.seed)
    model = backbones.create_model(cfg.backbone, len(covers.genres), pretrained=False)  # speed only
    model.to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format).train()
    optimizer = torch.optim.AdamW(backbones.param_groups(model, cfg.backbone, cfg.lr, cfg.weight_decay,
                                                         cfg.backbone_lr_mult), lr=cfg.lr)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    tr = covers.indices("train")
    need = (steps + 1) * cfg.batch_size
    idx = np.resize(tr, max(need, len(tr)))  # enough covers for the timed steps, repeating if few
    ds = cnn.CoverDataset(covers.images, covers.labels, idx,
                          create_transform(cfg.image_size, True, cfg.trivial_augment, cfg.aug_scale_min))
    loader = cnn.image_loader(ds, cfg, device, training=True, generator=torch.Generator().manual_seed(0))
    channels_last = device.type == "cuda"
    bare, train = [], []
    for _ in range(repeats):
        bare.append(_bare(model, optimizer, criterion, cfg, device, autocast, scaler, steps))
        # the loop exactly as fit runs it; its images/s excludes the first batch (the loader's start-up)
        cnn.train_one_epoch(model, loader, optimizer, lr_scheduler, criterion, device, autocast, scaler,
                            lambda x: normalize(x, channels_last), max_steps=1, desc="warm-up")
        m = cnn.train_one_epoch(model, loader, optimizer, lr_scheduler, criterion, device, autocast, scaler,
                                lambda x: normalize(x, channels_last), max_steps=steps, desc="timed")
        train.append(m["images_per_s"])
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


def measure_probe_paths(covers, cfg: CNNConfig) -> dict:
    """Seconds for a ``freeze=backbone`` fit: embeddings once (cold cache, then warm) vs backbone every epoch."""
    cfg = dataclasses.replace(cfg, freeze="backbone", lp_epochs=0, patience=0)
    out = {"epochs": cfg.epochs, "image_size": cfg.image_size, "backbone": cfg.backbone,
           "train_covers": int(len(covers.indices("train")))}
    with _cold_cache():
        for label, use in (("embeddings_cold_s", True), ("embeddings_cached_s", True), ("backbone_every_epoch_s", False)):
            start = time.perf_counter()
            result = cnn.fit(covers, cfg, log=False, use_embeddings=use, progress=False)
            out[label] = time.perf_counter() - start
            out[label.replace("_s", "_val_macro_f1")] = result.best_val_macro_f1
    out["speedup_cold"] = out["backbone_every_epoch_s"] / out["embeddings_cold_s"]
    return out
