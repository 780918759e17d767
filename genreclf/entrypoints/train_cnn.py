"""Entry point ``train_cnn``: one MLflow run around ``training.fit`` - config, data, curves, evaluation on
the same split manifest and with the same metric names as the feature baseline, Grad-CAM galleries,
and the registered pyfunc ``album-genre-cnn`` (alias challenger).

``resume=<run id>`` continues that very run from its last checkpoint, with the configuration the
run logged (``config.yaml``) - only ``device`` and ``workers`` may change on resume.

Under ``torchrun --nproc-per-node N -m genreclf.cli train_cnn ...`` every process trains its shard
(:mod:`genreclf.models.cnn.distributed`); rank 0 alone creates the run, logs, checkpoints, evaluates and
registers - the others (``_follow``) only train. A resume must use the same number of processes.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time

import torch
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from genreclf.config import CNNConfig, DataConfig, Resolved, as_flat_dict
from genreclf.data.covers import CoverSet, load_covers
from genreclf.entrypoints.skeleton import entry_run, provenance
from genreclf.metrics import evaluate_split
from genreclf.models.cnn import FAMILY, checkpoints, distributed, gradcam, predictor, training
from genreclf.nets import backbones
from genreclf.plotting import plt
from genreclf.serving.cover_model import log_cover_model
from genreclf.tracking import checkpoints as run_checkpoints
from genreclf.tracking import runs

log = logging.getLogger(__name__)


def run_name(cfg: CNNConfig) -> str:
    lr = f"{cfg.lr:.0e}".replace("e-0", "e-").replace("e+0", "e")  # 0.0003 -> 3e-4
    regime = {"none": "", "backbone": "-probe"}.get(cfg.freeze, f"-from-{cfg.freeze}")
    return f"cnn-{cfg.backbone}-lr{lr}{regime}"


def _resumed(resolved: Resolved) -> tuple[Resolved, dict]:
    """The resolved configuration logged by the run to resume, and its last checkpoint."""
    now = resolved.cnn
    ckpt = run_checkpoints.load(now.resume)
    with tempfile.TemporaryDirectory() as tmp:
        with open(runs.download(f"runs:/{now.resume}/config.yaml", tmp)) as f:
            logged = yaml.safe_load(f)
    data = DataConfig(**logged["data"])
    cfg = dataclasses.replace(CNNConfig(**logged["cnn"]), resume=now.resume, device=now.device, workers=now.workers)
    return Resolved(resolved.entry_point, {"data": data, "cnn": cfg}), ckpt


def curves_figure(history: list[dict], best_epoch: int, title: str) -> Figure:
    epochs = list(range(len(history)))
    col = {k: [h[k] for h in history] for k in history[0]}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(epochs, col["train_loss"], "o-", label="train")
    axes[0].plot(epochs, col["val_loss"], "o-", label="val")
    axes[0].set_title("loss")
    axes[1].plot(epochs, col["train_accuracy"], "o-", label="train accuracy")
    axes[1].plot(epochs, col["val_accuracy"], "o-", label="val accuracy")
    axes[1].plot(epochs, col["val_macro_f1"], "s--", label="val macro-F1")
    axes[1].set_title("accuracy / macro-F1")
    axes[2].plot(epochs, col["lr"], "o-")
    axes[2].set_title("head learning rate (end of epoch)")
    for ax in axes[:2]:
        ax.axvline(best_epoch, color="grey", ls=":", label=f"best (epoch {best_epoch})")
        ax.legend(fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(resolved: Resolved) -> dict:
    distributed.init(resolved.cnn.device)  # no-op unless launched by torchrun
    try:
        return _lead(resolved) if distributed.is_main() else _follow(resolved)
    finally:
        distributed.shutdown()


def _prepare(resolved: Resolved, progress: bool = True) -> tuple[Resolved, dict | None, CoverSet]:
    """Configure MLflow, read the run to resume (its config and last checkpoint), check the CNN
    parameters, load the covers. Under torchrun rank 0 goes first (it creates the experiment and the
    decode cache), the others reuse what it made."""
    with distributed.main_first():
        runs.configure(resolved.data.experiment)
    resume = None
    if resolved.cnn.resume:
        resolved, resume = _resumed(resolved)
        runs.use_experiment_of(resolved.cnn.resume)  # MLflow continues a run only inside its own experiment
    cfg = resolved.cnn
    if cfg.pretrained and not cfg.weights_path:
        backbones.ensure_weights(cfg.backbone)  # offline without the file: say so before any work
    with distributed.main_first():
        covers = load_covers(resolved.data, progress=progress)
    return resolved, resume, covers


def _follow(resolved: Resolved) -> dict:
    """Ranks > 0 under torchrun: the same covers and training as rank 0, nothing written to MLflow."""
    resolved, resume, covers = _prepare(resolved, progress=False)
    training.fit(covers, resolved.cnn, resume=resume, progress=False)
    return {}


def _check_resumable(run_id: str, covers: CoverSet) -> None:
    """The run to resume must have trained on these covers, with as many processes as now."""
    tags = runs.get_run(run_id).data.tags
    if tags.get("data_digest") != covers.digest[:20]:
        raise checkpoints.ResumeError(f"resume={run_id}: the covers changed since the run started "
                                      f"(data digest {covers.digest[:20]} differs); start a new run")
    if tags.get("processes", "1") != str(distributed.world_size()):
        raise checkpoints.ResumeError(f"resume={run_id}: the run trained with {tags.get('processes', '1')} "
                                      f"process(es), now {distributed.world_size()}; resume with the same "
                                      "torchrun --nproc-per-node")


def _lead(resolved: Resolved) -> dict:
    resolved, resume, covers = _prepare(resolved)
    cfg = resolved.cnn
    if resume is not None:
        _check_resumable(cfg.resume, covers)
    name = run_name(cfg)
    with entry_run(resolved, covers, name, "cnn", params=as_flat_dict(resolved.data, cfg), entry_point="train_cnn",
                   fresh=resume is None, run_id=cfg.resume or None, system_metrics=True,
                   tags={"backbone": cfg.backbone, "processes": str(distributed.world_size())}) as run_id:
        if resume is not None:
            runs.set_tags({"resumed_after_epoch": resume["epoch"]})
        start = time.perf_counter()
        result = training.fit(covers, cfg, resume=resume, on_epoch=lambda epoch, m: runs.log_metrics(m, step=epoch),
                         checkpoint=run_checkpoints.save)
        runs.set_tags({"device": result.device, "torch_version": torch.__version__,
                       **{f"weights_{k}": v for k, v in result.weights.items()}})  # which ImageNet file, exactly
        runs.log_figure(curves_figure(result.history, result.best_epoch, name), "curves/training_curves.png")
        metrics = evaluate(result, covers, cfg, name)
        runs.log_metrics({"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                          "fit_seconds": time.perf_counter() - start})
        tags = provenance(covers, run_id, "cnn", metrics, backbone=cfg.backbone, image_size=cfg.image_size)
        model_uri, version = log_cover_model(FAMILY, predictor.weights_writer(result.model),
                                             predictor.meta_for(cfg, covers), covers, cfg.register, tags)
        run_checkpoints.prune(run_id, cfg.keep_checkpoints)  # finished: resume no longer needs them
    log.info("%s: val macro-F1 %.3f, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)", name,
             metrics["val_macro_f1"], metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, "best_epoch": result.best_epoch,
            "epochs_run": len(result.history), **metrics}


def evaluate(result: training.FitResult, covers: CoverSet, cfg: CNNConfig, name: str) -> dict[str, float]:
    """Log val and test evaluations of the best model (and the Grad-CAM galleries); the metrics."""
    va, te = covers.indices("val"), covers.indices("test")
    proba_va = training.predict(result.model, covers, va, cfg, result.device)
    proba_te = training.predict(result.model, covers, te, cfg, result.device)
    metrics = {**runs.log_evaluation(evaluate_split("val", covers.labels[va], proba_va, covers.genres, name),
                                     step=len(result.history)),
               **runs.log_evaluation(evaluate_split("test", covers.labels[te], proba_te, covers.genres, name))}
    if cfg.gradcam_per_genre > 0:
        runs.log_figures(gradcam.galleries(result.model, cfg.backbone, cfg.image_size, covers.images[te],
                                           covers.labels[te], proba_te, covers.genres, cfg.gradcam_per_genre))
    return metrics
