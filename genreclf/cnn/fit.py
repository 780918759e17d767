"""Fine-tuning a torchvision CNN on the covers: ``fit`` (reusable, also by tuning) and ``train_cnn``.

One epoch = ``train_one_epoch`` + ``evaluate`` on the validation split, with the autocast context
and GradScaler passed in (bf16 autocast on CUDA, no-ops on CPU - nanoGPT's pattern, no branches
in the loop). Covers come decoded from the cache as uint8 and are normalised on the device.
While the backbone is frozen (``freeze=backbone``, or the ``lp_epochs`` linear-probe warm-up) on a
CPU, the head trains on backbone embeddings computed once (``embeddings.py``).

Every epoch is reproducible from (seed, epoch) alone - the global RNG and the loader's shuffling
generator are re-seeded per epoch - so a run resumed from its last checkpoint ends exactly where
an uninterrupted run does (bit for bit on CPU, where deterministic algorithms are switched on).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from genreclf.cnn import backbones, checkpoints, embeddings
from genreclf.cnn.transforms import create_transform, normalize, to_chw
from genreclf.config import CNNConfig
from genreclf.errors import UserError
from genreclf.metrics import classification_metrics
from genreclf.progress import progress_bar
from genreclf.tracking import runs as tracking

logger = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name.split(":")[0] not in available:
        raise UserError(f"device={name!r}: use auto, cpu, cuda or mps")
    if not available[name.split(":")[0]]:
        raise UserError(f"device={name!r} is not available on this machine; use device=auto or cpu")
    return torch.device(name)


def check_config(cfg: CNNConfig) -> None:
    """Refuse settings that cannot train, naming the parameter, before any expensive work."""
    rules = [("epochs", cfg.epochs >= 1, ">= 1"), ("batch_size", cfg.batch_size >= 2, ">= 2 (batch norm)"),
             ("image_size", cfg.image_size >= 32, ">= 32"), ("lr", cfg.lr > 0, "> 0"),
             ("backbone_lr_mult", cfg.backbone_lr_mult >= 0, ">= 0"), ("weight_decay", cfg.weight_decay >= 0, ">= 0"),
             ("label_smoothing", 0 <= cfg.label_smoothing < 1, "in [0, 1)"),
             ("aug_scale_min", 0 < cfg.aug_scale_min <= 1, "in (0, 1]"), ("lp_epochs", cfg.lp_epochs >= 0, ">= 0"),
             ("warmup_epochs", cfg.warmup_epochs >= 0, ">= 0"), ("patience", cfg.patience >= 0, ">= 0"),
             ("keep_checkpoints", cfg.keep_checkpoints in ("none", "best", "all"), "none | best | all")]
    bad = [f"{name}={getattr(cfg, name)!r} (must be {rule})" for name, ok, rule in rules if not ok]
    if bad:
        raise UserError("invalid CNN parameters: " + "; ".join(bad))
    backbones.spec(cfg.backbone)


def precision(device: torch.device):
    """(autocast context, GradScaler): bf16 where supported, fp16 + loss scaling on older GPUs, fp32 on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return contextlib.nullcontext(), torch.amp.GradScaler("cpu", enabled=False)


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
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=training, generator=generator,
                      num_workers=workers, pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
                      drop_last=training and len(dataset) > cfg.batch_size)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer, lr_scheduler, criterion, device, autocast,
                    scaler, prepare: Callable, max_steps: int = 0, desc: str = "train") -> dict[str, float]:
    """One pass over ``loader`` (the caller sets train/eval modes). Losses stay on the device: no per-step sync."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, start = 0, time.perf_counter()
    bar = progress_bar(loader, desc=desc, leave=False, total=min(len(loader), max_steps or len(loader)))
    for step, (x, y) in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        x, y = prepare(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        with autocast:
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum.item() / max(seen, 1), "train_accuracy": correct.item() / max(seen, 1),
            "images_per_s": seen / seconds, "train_time_s": seconds}


def evaluate(model: nn.Module, loader: DataLoader, device, autocast, prepare: Callable,
             views: Callable) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities averaged over the TTA views, labels, mean NLL) of every item of ``loader``."""
    model.eval()
    probs, labels = [], []
    with torch.inference_mode():
        for x, y in loader:
            x = prepare(x.to(device, non_blocking=True))
            p, vs = torch.zeros((), device=device), views(x)
            for v in vs:
                with autocast:
                    p = p + model(v).float().softmax(1)
            probs.append((p / len(vs)).cpu())
            labels.append(y)
    proba, y = torch.cat(probs), torch.cat(labels)
    loss = F.nll_loss(proba.clamp_min(1e-12).log(), y).item()
    return proba.numpy(), y.numpy(), loss


def image_views(tta: bool):
    return (lambda x: [x, x.flip(-1)]) if tta else (lambda x: [x])


@dataclass
class FitResult:
    model: nn.Module                       # best weights restored, on ``device``, eval mode
    device: torch.device
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_macro_f1: float = float("nan")
    stopped_early: bool = False


def fit(covers, cfg: CNNConfig, *, on_epoch: Callable[[int, dict], None] | None = None, log: bool = True,
        checkpoint: bool = True, resume: dict | None = None, use_embeddings: bool | None = None,
        progress: bool = True) -> FitResult:
    """Train on ``covers``' train split, early-stop on val macro-F1, return the best model.

    ``on_epoch(epoch, metrics)`` runs after each validation and may raise (``optuna.TrialPruned``);
    the exception propagates after cleanup. ``log`` sends per-epoch metrics (step=epoch) and, with
    ``checkpoint``, a checkpoint to the active run. ``resume`` is a dict from ``checkpoints.load``.
    ``use_embeddings`` (default: on CPU) trains the head on cached embeddings while the backbone is frozen.
    """
    check_config(cfg)
    device = pick_device(cfg.device)
    autocast, scaler = precision(device)
    channels_last = device.type == "cuda"
    if cfg.image_size > covers.images.shape[1]:
        logger.warning("image_size=%d is larger than the cached covers (%d px): they are upsampled; "
                       "use cache_size >= image_size", cfg.image_size, covers.images.shape[1])
    use_embeddings = device.type == "cpu" if use_embeddings is None else use_embeddings
    torch.manual_seed(cfg.seed)  # the new head (and the whole net when not pretrained)
    model = backbones.create_model(cfg.backbone, len(covers.genres), cfg.pretrained, cfg.weights_path)
    backbones.freeze(model, cfg.backbone, cfg.freeze)  # validates the stage name before any work
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    head = backbones.head(model, cfg.backbone)

    tr, va = covers.indices("train"), covers.indices("val")
    train_ds = CoverDataset(covers.images, covers.labels, tr,
                            create_transform(cfg.image_size, True, cfg.trivial_augment, cfg.aug_scale_min))
    val_ds = CoverDataset(covers.images, covers.labels, va, create_transform(cfg.image_size, False))
    steps = len(train_ds) // cfg.batch_size if len(train_ds) > cfg.batch_size else 1
    steps = min(steps, cfg.max_steps_per_epoch or steps)
    optimizer = torch.optim.AdamW(backbones.param_groups(model, cfg.backbone, cfg.lr, cfg.weight_decay,
                                                         cfg.backbone_lr_mult), lr=cfg.lr)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_epochs * steps, cfg.epochs * steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    state = {"best_f1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [], "stopped": False}
    best_weights, start_epoch = None, 0
    if resume is not None:
        _check_resumable(resume["config"], cfg)
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        lr_scheduler.load_state_dict(resume["lr_scheduler"])
        scaler.load_state_dict(resume["scaler"])
        state, best_weights, start_epoch = resume["state"], resume["best_weights"], resume["epoch"] + 1

    feats = None
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu" or deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        for epoch in range(start_epoch, 0 if state["stopped"] else cfg.epochs):
            start = time.perf_counter()
            probe = cfg.freeze == "backbone" or epoch < cfg.lp_epochs
            frozen = backbones.freeze(model, cfg.backbone, "backbone" if probe else cfg.freeze)
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # augmentation and dropout of this epoch
            if probe and use_embeddings:  # the head alone, on backbone features computed once
                if feats is None:
                    feats = embeddings.cached(model, cfg.backbone, covers.images[np.concatenate([tr, va])],
                                              cfg.image_size, f"{covers.digest}|{len(tr)}", device, autocast, progress)
                net, prepare, views = head, (lambda x: x), embeddings.views(cfg.tta)
                train_dl = embeddings.loader(feats[:len(tr)], covers.labels[tr], cfg.batch_size, True, g)
                val_dl = embeddings.loader(feats[len(tr):], covers.labels[va], 256, False)
            else:  # the whole net on augmented covers (frozen parts stay in eval mode)
                net, prepare, views = model, (lambda x: normalize(x, channels_last)), image_views(cfg.tta)
                train_dl, val_dl = image_loader(train_ds, cfg, device, True, g), image_loader(val_ds, cfg, device, False)
            backbones.train_mode(net, frozen if net is model else [])
            metrics = train_one_epoch(net, train_dl, optimizer, lr_scheduler, criterion, device, autocast, scaler,
                                      prepare, steps, desc=f"epoch {epoch}" + (" (head)" if net is head else ""))
            proba, y, val_loss = evaluate(net, val_dl, device, autocast, prepare, views)
            val = classification_metrics(y, proba, covers.genres, "val")
            metrics.update(val_loss=val_loss, val_accuracy=val["val_accuracy"], val_macro_f1=val["val_macro_f1"],
                           lr=optimizer.param_groups[0]["lr"], epoch_time_s=time.perf_counter() - start)
            improved = metrics["val_macro_f1"] > state["best_f1"]
            if improved:
                state.update(best_f1=metrics["val_macro_f1"], best_epoch=epoch, bad_epochs=0)
                best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            elif epoch >= cfg.lp_epochs:  # no early stop while only the head is warming up
                state["bad_epochs"] += 1
            state["history"].append(metrics)
            state["stopped"] = bool(cfg.patience and state["bad_epochs"] >= cfg.patience and epoch + 1 < cfg.epochs)
            _log_epoch(epoch, metrics)
            if log:
                # per-genre val F1 too: a curve per genre, not one dot after training
                tracking.log_metrics({**metrics, **{k: v for k, v in val.items() if "_f1_" in k}}, step=epoch)
                if checkpoint:
                    checkpoints.save(epoch, model, optimizer, lr_scheduler, scaler, cfg, state, best_weights, improved)
            if on_epoch is not None:
                on_epoch(epoch, dict(metrics))
            if state["stopped"]:
                logger.info("early stop after epoch %d: val macro-F1 has not improved for %d epochs "
                            "(best %.4f at epoch %d)", epoch, cfg.patience, state["best_f1"], state["best_epoch"])
                break
    finally:
        torch.use_deterministic_algorithms(deterministic)
    if best_weights is not None:
        model.load_state_dict(best_weights)
    for p in model.parameters():
        p.requires_grad_(True)  # Grad-CAM and later fine-tuning need the full graph
    model.eval()
    return FitResult(model, device, state["history"], state["best_epoch"], state["best_f1"], state["stopped"])


def _log_epoch(epoch: int, m: dict) -> None:
    logger.info(
        "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f macro-F1 %.3f | lr %.2e | %.1fs, %.0f img/s",
        epoch, m["train_loss"], m["train_accuracy"], m["val_loss"], m["val_accuracy"], m["val_macro_f1"], m["lr"],
        m["epoch_time_s"], m["images_per_s"])


def _check_resumable(saved: dict, cfg: CNNConfig) -> None:
    ignore = {"resume", "device", "workers", "register", "gradcam_per_genre", "keep_checkpoints"}
    diff = {k: (v, getattr(cfg, k)) for k, v in saved.items() if k not in ignore and getattr(cfg, k, v) != v}
    if diff:
        raise checkpoints.ResumeError("resume: the checkpoint was trained with other settings: "
                                      + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items()))


def predict(model: nn.Module, covers, idx: np.ndarray, cfg: CNNConfig, device: torch.device) -> np.ndarray:
    """Probabilities for ``covers.images[idx]`` with the eval preset (and flip TTA when ``cfg.tta``)."""
    autocast, _ = precision(device)
    ds = CoverDataset(covers.images, covers.labels, idx, create_transform(cfg.image_size, False))
    proba, _, _ = evaluate(model, image_loader(ds, cfg, device, False), device, autocast,
                           lambda x: normalize(x, device.type == "cuda"), image_views(cfg.tta))
    return proba
