"""Fine-tuning a torchvision CNN on the covers: build the training state, run epochs, stop early.

``fit`` is reused by the ``train_cnn`` entry point and by tuning; it never logs anything itself:
``on_epoch(epoch, metrics)`` and ``checkpoint(state, improved)`` let the caller do that (and may
raise, e.g. ``optuna.TrialPruned``; the exception propagates after cleanup). While the backbone is
frozen (``freeze=backbone``, or the ``lp_epochs`` linear-probe warm-up) on a CPU, the head trains
on backbone embeddings computed once (``embeddings.py``).

Every epoch is reproducible from (seed, epoch) alone - the global RNG and the loader's shuffling
generator are re-seeded per epoch - so a run resumed from its last checkpoint (at epoch + 1) ends
exactly where an uninterrupted run does (bit for bit on CPU, where deterministic algorithms are on).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from genreclf.config import CNNConfig
from genreclf.data.covers import CoverSet
from genreclf.errors import UserError
from genreclf.metrics import classification_metrics
from genreclf.models.cnn import checkpoints, distributed, embeddings
from genreclf.models.cnn.datasets import CoverDataset, image_loader
from genreclf.models.cnn.device import Runtime
from genreclf.models.cnn.loop import Phase, TrainState, evaluate, train_one_epoch
from genreclf.nets import backbones
from genreclf.nets.transforms import create_transform, flip_views

logger = logging.getLogger(__name__)
OnEpoch = Callable[[int, dict], None]
OnCheckpoint = Callable[[TrainState, bool], None]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: nothing trained is worth logging or registering."""


def check_finite(epoch: int, train_loss: float, val_loss: float, cfg: CNNConfig) -> None:
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        raise TrainingDiverged(f"training diverged in epoch {epoch}: train loss {train_loss}, val loss "
                               f"{val_loss} (lr={cfg.lr}); lower lr, raise warmup_epochs, or check the covers. "
                               f"No model was logged or registered.")


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def build_state(covers: CoverSet, cfg: CNNConfig, resume: dict | None = None) -> TrainState:
    """Model, optimizer, schedule and loss for ``cfg`` - restored from ``resume`` (``checkpoints.load``)."""
    rt = Runtime.create(cfg.device)
    if cfg.image_size > covers.images.shape[1]:
        logger.warning("image_size=%d is larger than the cached covers (%d px): they are upsampled; "
                       "use cache_size >= image_size", cfg.image_size, covers.images.shape[1])
    torch.manual_seed(cfg.seed)  # the new head (and the whole net when not pretrained)
    model, weights = backbones.build(cfg.backbone, len(covers.genres), cfg.pretrained, cfg.weights_path)
    backbones.freeze(model, cfg.backbone, cfg.freeze)  # validates the stage name before any work
    model.to(rt.device, memory_format=torch.channels_last if rt.channels_last else torch.preserve_format)
    n_train = distributed.shard_len(len(covers.indices("train")))  # per process under torchrun
    steps = n_train // cfg.batch_size if n_train > cfg.batch_size else 1
    steps = min(steps, cfg.max_steps_per_epoch or steps)
    optimizer = torch.optim.AdamW(backbones.param_groups(model, cfg.backbone, cfg.lr, cfg.weight_decay,
                                                         cfg.backbone_lr_mult), lr=cfg.lr)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_epochs * steps, cfg.epochs * steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    state = TrainState(cfg, rt, model, optimizer, lr_scheduler, criterion, steps, weights=weights)
    if resume is not None:
        checkpoints.restore(state, resume)
    return state


class EarlyStopping:
    """Keeps the best weights by val macro-F1; stops after ``patience`` epochs without improvement
    (not counting the linear-probe warm-up, where only the head trains)."""

    def __init__(self, cfg: CNNConfig):
        self.patience, self.lp_epochs, self.epochs = cfg.patience, cfg.lp_epochs, cfg.epochs

    def update(self, state: TrainState, epoch: int, metrics: dict) -> bool:
        """Record ``epoch``'s metrics; returns whether it is the best epoch so far."""
        p = state.progress
        improved = metrics["val_macro_f1"] > p["best_f1"]
        if improved:
            p.update(best_f1=metrics["val_macro_f1"], best_epoch=epoch, bad_epochs=0)
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}
        elif epoch >= self.lp_epochs:  # no early stop while only the head is warming up
            p["bad_epochs"] += 1
        p["history"].append(metrics)
        p["stopped"] = bool(self.patience and p["bad_epochs"] >= self.patience and epoch + 1 < self.epochs)
        return improved


class EpochInputs:
    """The train/val inputs of an epoch: augmented covers for the whole net, or (head only, on CPU)
    backbone embeddings computed once."""

    def __init__(self, covers: CoverSet, cfg: CNNConfig, rt: Runtime, use_embeddings: bool, progress: bool):
        self.covers, self.cfg, self.rt, self.use_embeddings, self.progress = covers, cfg, rt, use_embeddings, progress
        self.tr, self.va = covers.indices("train"), covers.indices("val")
        self.train_ds = CoverDataset(covers.images, covers.labels, self.tr,
                                     create_transform(cfg.image_size, True, cfg.trivial_augment, cfg.aug_scale_min))
        self.val_ds = CoverDataset(covers.images, covers.labels, distributed.shard(self.va),
                                   create_transform(cfg.image_size, False))
        self.feats: np.ndarray | None = None

    def for_epoch(self, model: nn.Module, head_only: bool, g: torch.Generator) -> tuple[Phase, DataLoader, DataLoader]:
        cfg, rt, covers, tr, va = self.cfg, self.rt, self.covers, self.tr, self.va
        if head_only and self.use_embeddings:
            if self.feats is None:
                self.feats = embeddings.cached(model, cfg.backbone, covers.images[np.concatenate([tr, va])],
                                               cfg.image_size, f"{covers.digest}|{len(tr)}", rt.device, rt.autocast,
                                               self.progress)
            phase = Phase(backbones.head(model, cfg.backbone), lambda x: x.to(rt.device, non_blocking=True),
                          embeddings.views(cfg.tta))
            return (phase, embeddings.loader(self.feats[:len(tr)], covers.labels[tr], cfg.batch_size, True, g),
                    embeddings.loader(distributed.shard(self.feats[len(tr):]), distributed.shard(covers.labels[va]),
                                      256, False))
        phase = Phase(model, rt.images, lambda x: flip_views(x, cfg.tta))  # frozen parts stay in eval mode
        return phase, image_loader(self.train_ds, cfg, rt.device, True, g), image_loader(self.val_ds, cfg, rt.device,
                                                                                          False)


def run_epoch(state: TrainState, inputs: EpochInputs, epoch: int, genres: list[str]) -> dict[str, float]:
    """Train one epoch and validate it; the metrics (``train_loss`` ... ``val_macro_f1``, ``lr``, and
    ``val_f1_<genre>``: a curve per genre on the run page, not one dot after training)."""
    start, cfg, model = time.perf_counter(), state.cfg, state.model
    probe = cfg.freeze == "backbone" or epoch < cfg.lp_epochs
    frozen = backbones.freeze(model, cfg.backbone, "backbone" if probe else cfg.freeze)
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    torch.manual_seed(cfg.seed * 100_003 + epoch + 7_919 * distributed.rank())  # augmentation, dropout
    phase, train_dl, val_dl = inputs.for_epoch(model, probe, g)
    backbones.train_mode(phase.net, frozen if phase.net is model else [])
    desc = f"epoch {epoch}" + (" (head)" if phase.net is not model else "")
    # torchrun: DDP averages the gradients; rank 0's buffers (batch-norm statistics) win; the
    # validation shards are gathered so every rank takes the same early-stopping decision
    wrapped = replace(phase, net=distributed.wrap(phase.net, state.runtime.device))
    metrics = train_one_epoch(state, wrapped, train_dl, desc=desc)
    distributed.sync_buffers(phase.net)
    proba, y, val_loss = distributed.gather(*evaluate(state.runtime, phase, val_dl))
    check_finite(epoch, metrics["train_loss"], val_loss, cfg)
    val = classification_metrics(y, proba, genres, "val")
    metrics.update(val_loss=val_loss, val_accuracy=val["val_accuracy"], val_macro_f1=val["val_macro_f1"],
                   lr=state.optimizer.param_groups[0]["lr"], epoch_time_s=time.perf_counter() - start)
    metrics.update({k: v for k, v in val.items() if "_f1_" in k})
    return metrics


@dataclass
class FitResult:
    model: nn.Module                       # best weights restored, on ``device``, eval mode
    device: torch.device
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_macro_f1: float = float("nan")
    stopped_early: bool = False
    weights: dict[str, str] = field(default_factory=dict)  # the initial weights: source, path, sha256


def fit(covers: CoverSet, cfg: CNNConfig, *, on_epoch: OnEpoch | None = None, checkpoint: OnCheckpoint | None = None,
        resume: dict | None = None, use_embeddings: bool | None = None, progress: bool = True) -> FitResult:
    """Train on ``covers``' train split, early-stop on val macro-F1, return the best model.

    ``use_embeddings`` (default: on CPU) trains the head on cached embeddings while the backbone is frozen.
    """
    state = build_state(covers, cfg, resume)
    rt = state.runtime
    inputs = EpochInputs(covers, cfg, rt, rt.device.type == "cpu" if use_embeddings is None else use_embeddings,
                         progress)
    stopper = EarlyStopping(cfg)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(rt.device.type == "cpu" or deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = rt.device.type == "cuda"
    try:
        for epoch in range(state.epoch + 1, 0 if state.progress["stopped"] else cfg.epochs):
            metrics = run_epoch(state, inputs, epoch, covers.genres)
            improved = stopper.update(state, epoch, metrics)
            state.epoch = epoch
            _log_epoch(epoch, metrics)
            if on_epoch is not None:
                on_epoch(epoch, dict(metrics))
            if checkpoint is not None:
                checkpoint(state, improved)
            if state.progress["stopped"]:
                logger.info("early stop after epoch %d: val macro-F1 has not improved for %d epochs (best %.4f at "
                            "epoch %d)", epoch, cfg.patience, state.progress["best_f1"], state.progress["best_epoch"])
                break
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return _finish(state)


def _finish(state: TrainState) -> FitResult:
    model, p = state.model, state.progress
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    for param in model.parameters():
        param.requires_grad_(True)  # Grad-CAM and later fine-tuning need the full graph
    model.eval()
    return FitResult(model, state.runtime.device, p["history"], p["best_epoch"], p["best_f1"], p["stopped"],
                     state.weights)


def _log_epoch(epoch: int, m: dict) -> None:
    logger.info(
        "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f macro-F1 %.3f | lr %.2e | %.1fs, %.0f img/s",
        epoch, m["train_loss"], m["train_accuracy"], m["val_loss"], m["val_accuracy"], m["val_macro_f1"], m["lr"],
        m["epoch_time_s"], m["images_per_s"])


def predict(model: nn.Module, covers: CoverSet, idx: np.ndarray, cfg: CNNConfig, device: torch.device) -> np.ndarray:
    """Probabilities for ``covers.images[idx]`` with the eval preset (and flip TTA when ``cfg.tta``)."""
    rt = Runtime.create(str(device))
    ds = CoverDataset(covers.images, covers.labels, idx, create_transform(cfg.image_size, False))
    proba, _, _ = evaluate(rt, Phase(model, rt.images, lambda x: flip_views(x, cfg.tta)),
                           image_loader(ds, cfg, device, False))
    return proba
