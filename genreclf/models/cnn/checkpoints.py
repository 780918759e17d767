"""Training checkpoints: what they hold, how they are written to a folder and restored.

``last.pt`` holds {model, optimizer, lr_scheduler, scaler, epoch, config, state} (the torchvision
reference layout plus our early-stopping state); ``best.pt`` holds the best weights so far and the
epoch they come from. last.pt is written first: if a run dies between the two, best.pt is one
improvement behind and the best weights are exactly last.pt's model - which ``with_best`` detects,
so every kill point resumes to the same result. Where they are stored (run artifacts) is the
tracking layer's business (``genreclf.tracking.checkpoints``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from genreclf.config import CNNConfig
from genreclf.errors import UserError
from genreclf.models.cnn.loop import TrainState

# settings that may change between a run and its resumption (they do not change what is trained)
MAY_CHANGE = {"resume", "device", "workers", "register", "gradcam_per_genre", "keep_checkpoints"}
# keep_checkpoints -> the files kept once a run has finished (while unfinished, resume needs both)
KEEP = {"none": (), "best": ("best.pt",), "all": ("best.pt", "last.pt")}


class ResumeError(UserError):
    """The run named by ``resume`` has no usable checkpoint, or does not match this training."""


def to_dict(state: TrainState) -> dict:
    return {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "lr_scheduler": state.lr_scheduler.state_dict(), "scaler": state.runtime.scaler.state_dict(),
            "epoch": state.epoch, "config": dataclasses.asdict(state.cfg), "state": state.progress}


def write(folder: Path, state: TrainState, improved: bool) -> list[Path]:
    """Write last.pt (and best.pt when this epoch improved); returns the files in writing order."""
    paths = [folder / "last.pt"]
    torch.save(to_dict(state), paths[0])
    if improved and state.best_weights is not None:
        paths.append(folder / "best.pt")
        torch.save({"epoch": state.progress["best_epoch"], "model": state.best_weights}, paths[1])
    return paths


def with_best(last: dict, best: dict | None, what: str) -> dict:
    """``last`` with ``best_weights`` filled in from ``best`` (or from last.pt itself, see above)."""
    if best is None or best["epoch"] != last["state"]["best_epoch"]:
        if last["state"]["best_epoch"] != last["epoch"]:
            raise ResumeError(f"{what}: checkpoints/best.pt does not match last.pt")
        last["best_weights"] = {k: v.clone() for k, v in last["model"].items()}
    else:
        last["best_weights"] = best["model"]
    return last


def unwanted(keep: str) -> list[str]:
    """The checkpoint files a finished run does not keep. A finished run cannot be resumed, and its
    logged model holds the best weights, so by default nothing is kept (a ResNet-18 pair is ~170 MB)."""
    if keep not in KEEP:
        raise UserError(f"keep_checkpoints={keep!r}: expected one of {sorted(KEEP)}")
    return [name for name in ("best.pt", "last.pt") if name not in KEEP[keep]]


def check_resumable(saved: dict, cfg: CNNConfig) -> None:
    diff = {k: (v, getattr(cfg, k)) for k, v in saved.items() if k not in MAY_CHANGE and getattr(cfg, k, v) != v}
    if diff:
        raise ResumeError("resume: the checkpoint was trained with other settings: "
                          + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items()))


def restore(state: TrainState, ckpt: dict) -> None:
    """Load a checkpoint (with ``best_weights``) into a freshly built state; training goes on at epoch + 1."""
    check_resumable(ckpt["config"], state.cfg)
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    state.runtime.scaler.load_state_dict(ckpt["scaler"])
    state.progress, state.best_weights, state.epoch = ckpt["state"], ckpt["best_weights"], ckpt["epoch"]
