"""Entry point ``train_cnn``: one MLflow run around ``cnn.fit`` - config, data, curves, evaluation on
the same split manifest and with the same metric names as the feature baseline, Grad-CAM galleries,
and the registered pyfunc ``album-genre-cnn`` (alias challenger).

``resume=<run id>`` continues that very run from its last checkpoint, with the configuration the
run logged (``config.yaml``) - only ``device`` and ``workers`` may change on resume.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import yaml
from matplotlib.ticker import MaxNLocator

from genreclf import metrics as evaluation
from genreclf.cnn import backbones, checkpoints, gradcam
from genreclf.cnn import fit as cnn
from genreclf.cnn.model import log_model
from genreclf.config import CNNConfig, DataConfig, Resolved, as_flat_dict
from genreclf.data.covers import load_covers
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)


def run_name(cfg: CNNConfig) -> str:
    lr = f"{cfg.lr:.0e}".replace("e-0", "e-").replace("e+0", "e")  # 0.0003 -> 3e-4
    regime = {"none": "", "backbone": "-probe"}.get(cfg.freeze, f"-from-{cfg.freeze}")
    return f"cnn-{cfg.backbone}-lr{lr}{regime}"


def _resumed(resolved: Resolved) -> tuple[Resolved, dict]:
    """The resolved configuration logged by the run to resume, and its last checkpoint."""
    now = resolved.sections["cnn"]
    ckpt = checkpoints.load(now.resume)
    with tempfile.TemporaryDirectory() as tmp:
        with open(tracking.download(f"runs:/{now.resume}/config.yaml", tmp)) as f:
            logged = yaml.safe_load(f)
    data = DataConfig(**logged["data"])
    cfg = dataclasses.replace(CNNConfig(**logged["cnn"]), resume=now.resume, device=now.device, workers=now.workers)
    return Resolved(resolved.entry_point, {"data": data, "cnn": cfg}), ckpt


def curves_figure(history: list[dict], best_epoch: int, title: str):
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
    data_cfg, cfg = resolved.sections["data"], resolved.sections["cnn"]
    tracking.configure(data_cfg.experiment)
    resume = None
    if cfg.resume:
        resolved, resume = _resumed(resolved)
        data_cfg, cfg = resolved.sections["data"], resolved.sections["cnn"]
        tracking.use_experiment_of(cfg.resume)  # MLflow continues a run only inside its own experiment
    cnn.check_config(cfg)
    if cfg.pretrained and not cfg.weights_path:
        backbones.ensure_weights(cfg.backbone)  # offline without the file: say so before any work
    covers = load_covers(data_cfg)
    if resume is not None and tracking.get_run(cfg.resume).data.tags.get("data_digest") != covers.digest[:20]:
        raise checkpoints.ResumeError(f"resume={cfg.resume}: the covers changed since the run started "
                                      f"(data digest {covers.digest[:20]} differs); start a new run")
    name = run_name(cfg)
    with tracking.start_run(name, "train_cnn", "cnn", run_id=cfg.resume or None, system_metrics=True,
                            tags={"backbone": cfg.backbone}) as run_id:
        if resume is None:
            tracking.log_config(resolved)
            tracking.log_new_params(as_flat_dict(data_cfg, cfg))
            tracking.log_coverset(covers)
        else:
            tracking.set_tags({"resumed_after_epoch": resume["epoch"]})
        start = time.perf_counter()
        result = cnn.fit(covers, cfg, resume=resume)
        tracking.set_tags({"device": result.device, "torch_version": torch.__version__})
        history = result.history
        tracking.log_figure(curves_figure(history, result.best_epoch, name), "curves/training_curves.png")

        va, te = covers.indices("val"), covers.indices("test")
        proba_va = cnn.predict(result.model, covers, va, cfg, result.device)
        proba_te = cnn.predict(result.model, covers, te, cfg, result.device)
        metrics = {**evaluation.log_evaluation("val", covers.labels[va], proba_va, covers.genres, name, step=len(history)),
                   **evaluation.log_evaluation("test", covers.labels[te], proba_te, covers.genres, name)}
        tracking.log_metrics({"best_epoch": result.best_epoch, "epochs_run": len(history),
                              "fit_seconds": time.perf_counter() - start})
        if cfg.gradcam_per_genre > 0:
            gradcam.log_galleries(result.model, cfg.backbone, cfg.image_size, covers.images[te], covers.labels[te],
                                  proba_te, covers.genres, cfg.gradcam_per_genre)

        tags = {**{k: round(metrics[k], 4) for k in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")},
                "backbone": cfg.backbone, "image_size": cfg.image_size, "data_digest": covers.digest[:20],
                "genres": ",".join(covers.genres), "git_commit": tracking.git_commit(), "source_run_id": run_id,
                "model_family": "cnn"}
        model_uri, version = log_model(result.model, cfg, covers, tags, cfg.register)
        checkpoints.prune(run_id, cfg.keep_checkpoints)  # finished: resume no longer needs them
    log.info("%s: val macro-F1 %.3f, test accuracy %.3f, test macro-F1 %.3f; model %s (version %s)", name,
             metrics["val_macro_f1"], metrics["test_accuracy"], metrics["test_macro_f1"], model_uri, version)
    return {"run_id": run_id, "model_uri": model_uri, "model_version": version, "best_epoch": result.best_epoch,
            "epochs_run": len(history), **metrics}
