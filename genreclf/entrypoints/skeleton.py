"""The run skeleton every entry point shares:

    configure MLflow -> load the covers -> start the run -> log config, parameters and cover set
    -> (the entry point's own work) -> the model's provenance tags for its registered version

An entry point reads as its own steps on top of these functions (``serving.cover_model.log_cover_model``
logs and registers the model).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from genreclf.config import Resolved, as_flat_dict
from genreclf.data.covers import CoverSet, load_covers
from genreclf.tracking import runs

SUMMARY_METRICS = ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")


def open_covers(resolved: Resolved, progress: bool = True) -> CoverSet:
    """Point MLflow at the store and experiment, then load (or build) the cover set of ``resolved.data``."""
    runs.configure(resolved.data.experiment)
    return load_covers(resolved.data, progress=progress)


@contextlib.contextmanager
def entry_run(resolved: Resolved, covers: CoverSet | None, name: str, family: str, *,
              params: dict[str, Any] | None = None, entry_point: str | None = None, fresh: bool = True,
              **start: Any) -> Iterator[str]:
    """Start (or continue) the run; on a ``fresh`` run log config.yaml, the parameters (default: every
    section, flat) and the cover set. ``start``: run_id, parent_run_id, system_metrics, tags."""
    with runs.start_run(name, entry_point or resolved.entry_point, family, **start) as run_id:
        if fresh:
            runs.log_config(resolved)
            runs.log_new_params(as_flat_dict(*resolved.sections.values()) if params is None else params)
            if covers is not None:
                runs.log_coverset(covers)
        yield run_id


def provenance(covers: CoverSet, run_id: str | None, family: str, metrics: dict[str, float],
               **extra: Any) -> dict[str, Any]:
    """Tags of a registered version: its scores, its data and the code and run that made it."""
    return {**{k: round(metrics[k], 4) for k in SUMMARY_METRICS if k in metrics}, **extra,
            "data_digest": covers.digest[:20], "genres": ",".join(covers.genres), "git_commit": runs.git_commit(),
            "source_run_id": run_id, "model_family": family}
