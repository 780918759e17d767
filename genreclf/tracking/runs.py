"""The one module that talks to MLflow's tracking API.

Conventions every entry point follows (so the UI's compare view lines the models up):
* store: MLflow's embedded default (SQLite ``mlflow.db`` + ``./mlruns``) unless MLFLOW_TRACKING_URI
  is set; experiment from the ``experiment`` parameter (default ``album-genre``);
* readable run names (``rf-n300-d20``, ``cnn-resnet18-lr3e-4``) and tags ``model_family``,
  ``entry_point``, ``data_source``, ``data_digest``, ``genres``, ``git_commit``;
* shared metric names: ``val_accuracy``, ``val_macro_f1``, ``test_accuracy``, ``test_macro_f1``, ...
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from genreclf.config import Resolved
from genreclf.data.covers import CoverSet
from genreclf.metrics import Evaluation
from genreclf.plotting import plt
from genreclf.tracking import owner
from genreclf.tracking.experiments import activate, active_experiment_id
from genreclf.tracking.names import display_name

log = logging.getLogger(__name__)
NOT_FOUND = ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def configure(experiment: str) -> str:
    """Point MLflow at the project's store and experiment; returns the tracking URI."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(f"sqlite:///{Path('mlflow.db').resolve()}")
    project_run = os.environ.get("MLFLOW_RUN_ID")
    active = mlflow.active_run()
    if active is not None:
        # called inside a run (a tuning refit trains through train_cnn's own entry point): a nested
        # run must stay in its parent's experiment, whatever the experiment parameter says
        activate(active.info.experiment_id)
    elif project_run:
        # under `mlflow run` the run already exists, in the experiment of --experiment-name, and
        # MLflow refuses to continue it under another one: follow the run
        exp = mlflow.get_experiment(client().get_run(project_run).info.experiment_id)
        activate(exp.experiment_id)
        if exp.name != experiment:
            log.warning("experiment=%r ignored: `mlflow run` created this run in experiment %r "
                        "(pass --experiment-name %s to mlflow run)", experiment, exp.name, experiment)
    else:
        exp = mlflow.set_experiment(experiment)
        # when another process creates the experiment at the same moment, MLflow (3.x) returns it from
        # its RESOURCE_ALREADY_EXISTS branch WITHOUT making it active, and this process's runs would land
        # in Default (as when two tuning workers start together): activate it by id
        activate(exp.experiment_id)
    return mlflow.get_tracking_uri()


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def use_experiment_of(run_id: str) -> None:
    """Make the experiment of ``run_id`` the active one, to continue that run (``resume``)."""
    activate(client().get_run(run_id).info.experiment_id)


def in_active_experiment(run_id: str) -> bool:
    """Whether ``run_id`` lives in the active experiment (MLflow continues or nests runs only there)."""
    return client().get_run(run_id).info.experiment_id == active_experiment_id()


def experiment_name_of(run_id: str) -> str:
    return mlflow.get_experiment(client().get_run(run_id).info.experiment_id).name


def rename_run(run_id: str, name: str) -> None:
    client().update_run(run_id, name=name)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


@contextlib.contextmanager
def start_run(name: str, entry_point: str, model_family: str, *, parent_run_id: str | None = None,
              run_id: str | None = None, system_metrics: bool = False, tags: dict | None = None) -> Iterator[str]:
    """Open (or, under ``mlflow run`` / on resume, continue) a run; yields its run id."""
    base = {"model_family": model_family, "entry_point": entry_point, "git_commit": git_commit()}
    if run_id is None and parent_run_id is None:
        # under `mlflow run` the project run already exists and MLFLOW_RUN_ID names it. Consume the
        # variable: MLflow re-reads it on every start_run, so a later nested run would reopen it.
        run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    active = mlflow.active_run()
    nested = active is not None and active.info.run_id != run_id
    kwargs = dict(run_id=run_id, nested=nested, parent_run_id=parent_run_id,
                  log_system_metrics=system_metrics)
    if not run_id:
        kwargs["run_name"] = name
    reap_orphans(keep=run_id)
    with mlflow.start_run(**kwargs) as run:
        mlflow.set_tags({**base, **(tags or {}), **owner.owner_tags(), MLFLOW_RUN_NAME: name})
        try:
            yield run.info.run_id
        except BaseException as exc:
            # MLflow ends the run FAILED (KILLED on Ctrl-C) as the exception leaves; say why on the run
            owner.tag_failure(client(), run.info.run_id, exc)
            raise


def reap_orphans(keep: str | None = None) -> int:
    """Mark FAILED the runs of the active experiment left RUNNING by a process that is gone (``owner``)."""
    return owner.reap_orphans(client(), active_experiment_id(), keep)


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params({k: ("" if v is None else v) for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float | None], step: int | None = None) -> None:
    clean = {display_name(k): float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    mlflow.log_metrics(clean, step=step)


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def log_json(obj: Any, path: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=2, default=str), path)


def log_table(df: pd.DataFrame, path: str) -> None:
    """Log a DataFrame as CSV or parquet, by the path's suffix."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        if local.suffix == ".parquet":
            df.to_parquet(local, index=False)
        else:
            df.to_csv(local, index=False)
        mlflow.log_artifact(str(local), str(Path(path).parent) if Path(path).parent != Path(".") else None)


def log_figure(fig: Figure, path: str) -> None:
    mlflow.log_figure(fig, path)
    plt.close(fig)


def log_figures(figures: dict[str, Figure]) -> None:
    """Log figures by artifact path (e.g. the Grad-CAM galleries)."""
    for path, fig in figures.items():
        log_figure(fig, path)


def log_evaluation(ev: Evaluation, step: int | None = None) -> dict[str, float]:
    """Log one split's metrics, per-genre CSV and confusion matrix (PNG + JSON counts); returns the metrics.

    ``step``: where a per-epoch curve of the same metric exists (the CNN's val_*), log the final
    model's value after it, so it is the run's latest value and the curve keeps its shape.
    """
    log_metrics(ev.metrics, step=step)
    log_table(ev.per_genre, f"eval/{ev.split}_per_genre.csv")
    log_json(ev.confusion, f"eval/{ev.split}_confusion_matrix.json")
    log_figure(ev.figure, f"eval/{ev.split}_confusion_matrix.png")
    return ev.metrics


def log_image(image: np.ndarray, path: str) -> None:
    mlflow.log_image(image, artifact_file=path)


def log_artifact(local: str | Path, artifact_dir: str | None = None) -> None:
    mlflow.log_artifact(str(local), artifact_dir)


def log_config(resolved: Resolved) -> None:
    mlflow.log_text(resolved.to_yaml(), "config.yaml")  # to_yaml redacts secrets (storage passwords)


def log_coverset(covers: CoverSet) -> None:
    """Record the data of a run: dataset inputs per split, the split manifest, skipped files."""
    if covers.source.startswith("hf:"):
        source = HuggingFaceDatasetSource(path=covers.source[3:], split="train")
    else:
        try:
            with warnings.catch_warnings():
                # MLflow registers its local source class twice (bare paths and file:// URIs) and warns
                # that the two identical candidates are ambiguous, on every run
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                source = resolve_dataset_source(covers.source)
        except MlflowException:  # "synthetic:N" has no MLflow resolver; the data_source tag keeps it
            source = None
    manifest = covers.manifest()
    for split in ("train", "val", "test"):
        part = manifest[manifest["split"] == split].reset_index(drop=True)
        ds = mlflow.data.from_pandas(part, source=source, targets="genre",
                                     name=f"covers-{split}", digest=covers.digest[:20])
        mlflow.log_input(ds, context="training" if split == "train" else split)
    log_table(manifest, "data/split_manifest.csv")
    log_json({k: v for k, v in covers.report.items()}, "data/report.json")
    set_tags({"data_source": covers.source, "data_digest": covers.digest[:20],
              "genres": ",".join(covers.genres)})
    log_metrics({"data_covers": len(covers), "data_skipped": covers.report.get("skipped", 0),
                 "data_duplicates_dropped": covers.report.get("duplicates_dropped", 0)})


def client() -> MlflowClient:
    return MlflowClient()


def get_run(run_id: str):
    return client().get_run(run_id)


def run_exists(run_id: str, attempts: int = 3, pause_s: float = 0.5) -> bool:
    """Whether this tracking store holds an active (not deleted) run with this id.

    Only the store's "no such run" means False: any other failure (a server down, a locked database) is
    retried ``attempts`` times and then raised, since a caller that read it as "no run" would act on a
    run that exists (elect a second parent, skip closing a trial's run)."""
    for attempt in range(1, attempts + 1):
        try:
            return client().get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException as exc:
            if exc.error_code == NOT_FOUND:
                return False
            if attempt == attempts:
                raise
            log.warning("looking up run %s failed (%s); trying again", run_id, exc.error_code)
            time.sleep(pause_s * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def tag_run(run_id: str, tags: dict[str, Any]) -> None:
    """Set tags on a run that is not the active one (finished, or held by another process)."""
    c = client()
    for key, value in tags.items():
        c.set_tag(run_id, key, str(value))


def close_run(run_id: str, status: str = "KILLED", tags: dict[str, Any] | None = None) -> None:
    """Tag and terminate a run this process does not hold (e.g. the trial of a killed worker)."""
    tag_run(run_id, tags or {})
    client().set_terminated(run_id, status)


def delete_artifacts(run_id: str, path: str) -> None:
    """Remove an artifact file or folder of a run (e.g. checkpoints no longer needed)."""
    get_artifact_repository(get_run(run_id).info.artifact_uri).delete_artifacts(path)


def download(artifact_uri: str, dst: str | None = None) -> str:
    return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=dst)


def search_runs(experiment: str, filter_string: str = "", order_by: list[str] | None = None) -> list:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client().search_runs([exp.experiment_id], filter_string=filter_string,
                                order_by=order_by or ["attributes.start_time DESC"], max_results=5000)


def log_new_params(params: dict[str, Any]) -> None:
    """Log only the params the active run does not have yet: under `mlflow run` the project already
    logged the entry point's parameters as strings ("0" for 0.0), and MLflow refuses a changed value."""
    have = client().get_run(mlflow.active_run().info.run_id).data.params
    log_params({k: v for k, v in params.items() if k not in have})


def create_run(name: str, tags: dict[str, Any]) -> str:
    """Create (not start) a run in the active experiment: a tuning study's parent, that every worker
    then continues with start_run(run_id=...)."""
    run = client().create_run(active_experiment_id(), run_name=name, tags={k: str(v) for k, v in tags.items()})
    return run.info.run_id
