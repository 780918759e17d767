"""Training checkpoints as run artifacts (``checkpoints/last.pt``, ``checkpoints/best.pt``), and
loading them back to resume that run. The run tag ``checkpoint_epoch`` is set only once both files
are complete (file contents and order: ``genreclf.models.cnn.checkpoints``)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from genreclf.models.cnn import checkpoints
from genreclf.models.cnn.checkpoints import ResumeError
from genreclf.models.cnn.loop import TrainState
from genreclf.tracking import owner, runs

log = logging.getLogger(__name__)
TAG = "checkpoint_epoch"


def save(state: TrainState, improved: bool) -> None:
    """Log this epoch's checkpoint files to the active run, then tag the run with the epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in checkpoints.write(Path(tmp), state, improved):
            runs.log_artifact(path, "checkpoints")
    runs.set_tags({TAG: state.epoch})


def prune(run_id: str, keep: str) -> list[str]:
    """After a successful run: delete the checkpoints the user did not ask to keep (``keep_checkpoints``)."""
    gone = checkpoints.unwanted(keep)
    for name in gone:
        try:
            runs.delete_artifacts(run_id, f"checkpoints/{name}")
        except OSError as exc:  # never logged (no epoch finished): nothing to delete
            log.debug("checkpoints/%s not deleted: %s", name, exc)
    return gone


def load(run_id: str) -> dict:
    """The last checkpoint of a run, with ``best_weights`` filled in (CPU tensors)."""
    try:
        run = runs.get_run(run_id)
    except Exception as exc:  # MlflowException for unknown ids, ValueError for malformed ones
        raise ResumeError(f"resume={run_id!r}: no such run in this tracking store ({exc})") from None
    if run.info.status == "RUNNING" and owner.owner_alive(run.data.tags):
        raise ResumeError(f"resume={run_id!r}: run {run.info.run_name!r} is still being trained by process "
                          f"{run.data.tags.get('owner_pid')} on {run.data.tags.get('owner_host')}; stop that "
                          f"process (or let it finish) before resuming, or two trainings would write one run")
    if run.info.status == "FINISHED":
        raise ResumeError(f"resume={run_id!r}: run {run.info.run_name!r} already finished; nothing to resume")
    if TAG not in run.data.tags:
        raise ResumeError(f"resume={run_id!r}: run {run.info.run_name!r} has no completed checkpoint "
                          f"(it stopped before its first epoch ended); start a new run instead")
    with tempfile.TemporaryDirectory() as tmp:
        last = _load_last(runs.download(f"runs:/{run_id}/checkpoints/last.pt", tmp), run_id)
        best = None
        if last["state"]["best_epoch"] >= 0:
            try:
                best = torch.load(runs.download(f"runs:/{run_id}/checkpoints/best.pt", tmp),
                                  map_location="cpu", weights_only=True)
            except Exception:  # died before the first best.pt was complete: see genreclf.models.cnn.checkpoints
                best = None
    ckpt = checkpoints.with_best(last, best, f"resume={run_id!r}")
    log.info("resuming run %s after epoch %d (best val macro-F1 %.4f at epoch %d)", run_id, ckpt["epoch"],
             ckpt["state"]["best_f1"], ckpt["state"]["best_epoch"])
    return ckpt


def _load_last(path: str, run_id: str) -> dict:
    """last.pt, or a ResumeError when it is truncated, foreign or lacks the keys resume needs."""
    try:
        last = torch.load(path, map_location="cpu", weights_only=True)
        last["state"]["best_epoch"], last["epoch"], last["model"]  # noqa: B018 - the keys resume needs
    except Exception as exc:  # truncated zip, foreign file, wrong layout: torch raises many types
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ResumeError(f"resume={run_id!r}: checkpoints/last.pt is damaged or not a genreclf checkpoint "
                          f"({type(exc).__name__}: {first}); start a new run") from None
    return last
