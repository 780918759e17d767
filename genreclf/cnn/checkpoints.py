"""Per-epoch training checkpoints as run artifacts, and loading them back to resume that run.

``checkpoints/last.pt`` holds {model, optimizer, lr_scheduler, scaler, epoch, config, state} (the
torchvision reference layout plus our early-stopping state); ``checkpoints/best.pt`` holds the best
weights so far and the epoch they come from. last.pt is written first: if a run dies between the
two, best.pt is one improvement behind and the best weights are exactly last.pt's model - which
``load`` detects, so every kill point resumes to the same result. The run tag ``checkpoint_epoch``
is set only once both files are complete.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import torch

from genreclf.errors import UserError
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)
TAG = "checkpoint_epoch"


class ResumeError(UserError):
    """The run named by ``resume`` has no usable checkpoint, or does not match this training."""


def save(epoch: int, model, optimizer, lr_scheduler, scaler, cfg, state: dict,
         best_weights: dict | None, best_changed: bool) -> None:
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
            "config": dataclasses.asdict(cfg), "state": state}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ckpt, Path(tmp) / "last.pt")
        tracking.log_artifact(Path(tmp) / "last.pt", "checkpoints")
        if best_changed and best_weights is not None:
            torch.save({"epoch": state["best_epoch"], "model": best_weights}, Path(tmp) / "best.pt")
            tracking.log_artifact(Path(tmp) / "best.pt", "checkpoints")
    tracking.set_tags({TAG: epoch})


KEEP = {"none": (), "best": ("best.pt",), "all": ("best.pt", "last.pt")}


def prune(run_id: str, keep: str) -> list[str]:
    """After a successful run: delete the checkpoints the user did not ask to keep (``keep_checkpoints``).

    While a run is unfinished both files stay (``resume`` needs them); once it has finished it cannot be
    resumed, and the logged model holds the best weights, so by default nothing is kept (a ResNet-18
    pair is ~170 MB)."""
    if keep not in KEEP:
        raise UserError(f"keep_checkpoints={keep!r}: expected one of {sorted(KEEP)}")
    gone = [name for name in ("best.pt", "last.pt") if name not in KEEP[keep]]
    for name in gone:
        try:
            tracking.delete_artifacts(run_id, f"checkpoints/{name}")
        except (OSError, FileNotFoundError) as exc:  # never logged (no epoch finished): nothing to delete
            log.debug("checkpoints/%s not deleted: %s", name, exc)
    return gone


def load(run_id: str) -> dict:
    """The last checkpoint of a run, with ``best_weights`` filled in (CPU tensors)."""
    try:
        run = tracking.get_run(run_id)
    except Exception as exc:  # MlflowException for unknown ids, ValueError for malformed ones
        raise ResumeError(f"resume={run_id!r}: no such run in this tracking store ({exc})") from None
    if run.info.status == "FINISHED":
        raise ResumeError(f"resume={run_id!r}: run {run.info.run_name!r} already finished; nothing to resume")
    if TAG not in run.data.tags:
        raise ResumeError(f"resume={run_id!r}: run {run.info.run_name!r} has no completed checkpoint "
                          f"(it stopped before its first epoch ended); start a new run instead")
    with tempfile.TemporaryDirectory() as tmp:
        last = tracking.download(f"runs:/{run_id}/checkpoints/last.pt", tmp)
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        best = None
        if ckpt["state"]["best_epoch"] >= 0:
            try:
                best = torch.load(tracking.download(f"runs:/{run_id}/checkpoints/best.pt", tmp),
                                  map_location="cpu", weights_only=True)
            except Exception:  # died before the first best.pt was complete: see the module docstring
                best = None
    if best is None or best["epoch"] != ckpt["state"]["best_epoch"]:
        if ckpt["state"]["best_epoch"] != ckpt["epoch"]:
            raise ResumeError(f"resume={run_id!r}: checkpoints/best.pt does not match last.pt")
        ckpt["best_weights"] = {k: v.clone() for k, v in ckpt["model"].items()}
    else:
        ckpt["best_weights"] = best["model"]
    log.info("resuming run %s after epoch %d (best val macro-F1 %.4f at epoch %d)", run_id, ckpt["epoch"],
             ckpt["state"]["best_f1"], ckpt["state"]["best_epoch"])
    return ckpt
