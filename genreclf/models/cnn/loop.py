"""One epoch of training and one pass of evaluation (the torchvision-references shape).

Both take the training state (or the runtime) and a ``Phase``: which network runs (the whole model,
or only its head on cached backbone embeddings), how a loader batch is prepared for it and which
test-time views are averaged. Covers come decoded from the cache as uint8 and are normalised on
the device; losses stay on the device during the epoch (no per-step synchronisation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from genreclf.config import CNNConfig
from genreclf.models.cnn import distributed
from genreclf.models.cnn.device import Runtime
from genreclf.nets.transforms import mean_softmax
from genreclf.progress import progress_bar


@dataclass
class Phase:
    """What one pass runs: ``net`` on ``prepare(batch)``, evaluated on the mean of ``views(x)``."""
    net: nn.Module
    prepare: Callable[[torch.Tensor], torch.Tensor]
    views: Callable[[torch.Tensor], list[torch.Tensor]]


@dataclass
class TrainState:
    """Everything that changes while training, and what a checkpoint restores."""
    cfg: CNNConfig
    runtime: Runtime
    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    steps_per_epoch: int
    epoch: int = -1                                   # the last finished epoch (-1: none yet)
    best_weights: dict[str, torch.Tensor] | None = None
    weights: dict[str, str] = field(default_factory=dict)  # where the initial weights came from (source, sha256)
    progress: dict[str, Any] = field(default_factory=lambda: {
        "best_f1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [], "stopped": False})


def train_one_epoch(state: TrainState, phase: Phase, loader: DataLoader, desc: str = "train") -> dict[str, float]:
    """One pass over ``loader`` (the caller sets train/eval modes), at most ``steps_per_epoch`` steps."""
    rt, max_steps = state.runtime, state.steps_per_epoch
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.long)
    seen, start = 0, time.perf_counter()
    bar = progress_bar(loader, desc=desc, leave=False, total=min(len(loader), max_steps or len(loader)))
    for step, (x, y) in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        x, y = phase.prepare(x), y.to(rt.device, non_blocking=True)
        with rt.autocast:
            logits = phase.net(x)
            loss = state.criterion(logits, y)
        state.optimizer.zero_grad(set_to_none=True)
        rt.scaler.scale(loss).backward()
        rt.scaler.step(state.optimizer)
        rt.scaler.update()
        state.lr_scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    bar.close()
    rt.sync()
    seconds = time.perf_counter() - start
    loss_sum, correct, seen = distributed.sum_across(loss_sum, correct, seen)  # all ranks' batches (torchrun)
    return {"train_loss": loss_sum.item() / max(seen, 1), "train_accuracy": correct.item() / max(seen, 1),
            "images_per_s": seen / seconds, "train_time_s": seconds}


def evaluate(rt: Runtime, phase: Phase, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities averaged over the views, labels, mean NLL) of every item of ``loader``."""
    phase.net.eval()
    probs, labels = [], []
    with torch.inference_mode():
        for x, y in loader:
            with rt.autocast:
                p = mean_softmax(phase.net, phase.views(phase.prepare(x)))
            probs.append(p.cpu())
            labels.append(y)
    proba, y = torch.cat(probs), torch.cat(labels)
    loss = F.nll_loss(proba.clamp_min(1e-12).log(), y).item()
    return proba.numpy(), y.numpy(), loss
