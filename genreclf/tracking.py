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
import io
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
SYSTEM_METRICS = True


def configure(experiment: str) -> str:
    """Point MLflow at the project's store and experiment; returns the tracking URI."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(f"sqlite:///{Path('mlflow.db').resolve()}")
    mlflow.set_experiment(experiment)
    return mlflow.get_tracking_uri()


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
        # under `mlflow run` the project run already exists and MLFLOW_RUN_ID names it
        run_id = os.environ.get("MLFLOW_RUN_ID")
    active = mlflow.active_run()
    nested = active is not None and active.info.run_id != run_id
    kwargs = dict(run_id=run_id, nested=nested, parent_run_id=parent_run_id,
                  log_system_metrics=system_metrics and SYSTEM_METRICS)
    if not run_id:
        kwargs["run_name"] = name
    with mlflow.start_run(**kwargs) as run:
        mlflow.set_tags({**base, **(tags or {}), "mlflow.runName": name})
        yield run.info.run_id


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params({k: ("" if v is None else v) for k, v in params.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
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


def log_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt
    mlflow.log_figure(fig, path)
    plt.close(fig)


def log_image(image: np.ndarray, path: str) -> None:
    mlflow.log_image(image, artifact_file=path)


def log_artifact(local: str | Path, artifact_dir: str | None = None) -> None:
    mlflow.log_artifact(str(local), artifact_dir)


def log_config(resolved) -> None:
    mlflow.log_text(resolved.to_yaml(), "config.yaml")


def log_coverset(covers, context_prefix: str = "") -> None:
    """Record the data of a run: dataset inputs per split, the split manifest, skipped files."""
    manifest = covers.manifest()
    for split in ("train", "val", "test"):
        part = manifest[manifest["split"] == split].reset_index(drop=True)
        ds = mlflow.data.from_pandas(part, source=covers.source, targets="genre",
                                     name=f"covers-{split}", digest=covers.digest[:20])
        mlflow.log_input(ds, context=f"{context_prefix}{'training' if split == 'train' else split}")
    log_table(manifest, "data/split_manifest.csv")
    log_json({k: v for k, v in covers.report.items()}, "data/report.json")
    set_tags({"data_source": covers.source, "data_digest": covers.digest[:20],
              "genres": ",".join(covers.genres)})
    log_metrics({"data_covers": len(covers), "data_skipped": covers.report.get("skipped", 0),
                 "data_duplicates_dropped": covers.report.get("duplicates_dropped", 0)})


def log_pyfunc(python_model, *, artifacts: dict[str, str], input_example: pd.DataFrame, signature,
               registered_name: str | None, tags: dict[str, Any] | None = None):
    """Log a pyfunc model (genreclf's code travels with it) and optionally register it.

    Returns (model_uri, registered version or None).
    """
    import genreclf
    pkg = str(Path(genreclf.__file__).resolve().parent)
    info = mlflow.pyfunc.log_model(
        name="model", python_model=python_model, artifacts=artifacts, code_paths=[pkg],
        input_example=input_example, signature=signature, registered_model_name=registered_name,
        pip_requirements=_requirements(), tags={k: str(v) for k, v in (tags or {}).items()},
    )
    version = info.registered_model_version if registered_name else None
    return info.model_uri, version


def _requirements() -> list[str]:
    from importlib.metadata import version
    pins = []
    for dist in ("mlflow", "torch", "torchvision", "scikit-learn", "opencv-python-headless", "scikit-image",
                 "pillow", "numpy", "pandas", "grad-cam", "pyyaml"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except Exception:
            pins.append(dist)
    return pins


def client() -> MlflowClient:
    return MlflowClient()


def get_run(run_id: str):
    return client().get_run(run_id)


def download(artifact_uri: str, dst: str | None = None) -> str:
    return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=dst)


def search_runs(experiment: str, filter_string: str = "", order_by: list[str] | None = None) -> list:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client().search_runs([exp.experiment_id], filter_string=filter_string,
                                order_by=order_by or ["attributes.start_time DESC"], max_results=5000)


def child_runs(experiment: str, parent_run_id: str) -> list:
    return search_runs(experiment, f"tags.mlflow.parentRunId = '{parent_run_id}'")


def find_finished_run(experiment: str, entry_point: str, params: dict[str, Any], commit: str):
    """A FINISHED run of ``entry_point`` with these parameters at this git commit, if any."""
    for run in search_runs(experiment, f"tags.entry_point = '{entry_point}' and attributes.status = 'FINISHED'"):
        if commit and run.data.tags.get("git_commit") != commit:
            continue
        logged = run.data.tags.get("step_params")
        if logged == json.dumps(params, sort_keys=True, default=str):
            return run
    return None


def figure_to_array(fig) -> np.ndarray:
    """Render a matplotlib figure to an RGB array (for galleries and the demo)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    from PIL import Image
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("RGB"))
