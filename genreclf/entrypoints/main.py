"""Entry point ``main`` (the default of ``mlflow run .``): the whole study in one parent run.

    features -> train_rf -> train_cnn -> promote (both models)

Each step is the project's own entry point, run as a child run of the parent
(``genreclf.tracking.project``). A step whose FINISHED run already exists in the experiment with the same
entry point, the same
parameters and the same git commit is reused instead of recomputed (the step's parameters are kept
on its run as the ``step_params`` tag, JSON, so the match is exact). ``promote`` always runs again:
the registry may have changed since (new challengers, moved aliases).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from genreclf.config import Resolved
from genreclf.entrypoints.skeleton import entry_run
from genreclf.errors import UserError
from genreclf.tracking import project, runs

log = logging.getLogger(__name__)

# step entry point -> config sections it takes (the MLproject parameters of that entry point)
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("features", ("data",)),
    ("train_rf", ("data", "rf")),
    ("train_cnn", ("data", "cnn")),
    ("promote", ("data", "promote")),
)
ALWAYS_RUN = {"promote"}


def project_dir() -> Path:
    """The project checkout holding MLproject (the steps are run from it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "MLproject").is_file():
        raise UserError(f"the main pipeline runs the project's entry points, but there is no MLproject in {root}; "
                        "run it from a checkout of the project (pip install -e .)")
    return root


def step_parameters(resolved: Resolved, sections: tuple[str, ...], step: str) -> dict[str, str]:
    """The MLproject parameters of one step, as strings, from the resolved configuration of ``main``.

    Values are passed explicitly (not the config file): the child sees exactly what ``main``
    resolved, and the reuse check compares exactly what ran.
    """
    params: dict[str, str] = {}
    for name in sections:
        for key, value in dataclasses.asdict(resolved.section(name)).items():
            params.setdefault(key, str(value).lower() if isinstance(value, bool) else str(value))
    if step == "promote":
        params["model_name"] = "all"  # the study trains both models, so it promotes both
    return params


def main(resolved: Resolved) -> dict:
    runs.configure(resolved.data.experiment)
    commit = runs.git_commit()
    root = project_dir()
    steps: list[dict] = []
    with entry_run(resolved, None, "main", "pipeline") as parent:  # the steps log the covers
        experiment = project.active_experiment_name()  # the one `mlflow run` put the parent in
        for step, sections in STEPS:
            params = step_parameters(resolved, sections, step)
            steps.append(run_step(root, experiment, parent, step, params, commit))
        reused = [s["step"] for s in steps if s["reused"]]
        runs.log_json(steps, "pipeline/steps.json")
        runs.log_metrics({f"{s['step']}_seconds": s["seconds"] for s in steps})
        runs.set_tags({"steps_reused": ",".join(reused) or "none",
                       **{f"step_run_id.{s['step']}": s["run_id"] for s in steps}})
    for s in steps:
        print(f"{s['step']:<10} {'reused' if s['reused'] else 'ran':<6} run {s['run_id']}  {s['seconds']:.1f}s")
    return {"run_id": parent, "steps": steps}


def run_step(root: Path, experiment: str, parent: str, step: str, params: dict[str, str], commit: str) -> dict:
    """Reuse a finished run of this step (same entry point, parameters, commit) or run it as a child."""
    start = time.perf_counter()
    done = None if step in ALWAYS_RUN else project.find_finished_run(experiment, step, params, commit)
    if done is not None:
        log.info("step %s: reusing finished run %s (same parameters and git commit %s)",
                 step, done.info.run_id, commit[:10] or "unknown")
        return {"step": step, "run_id": done.info.run_id, "reused": True, "seconds": time.perf_counter() - start}
    tags = {"entry_point": step, "git_commit": commit, "env_manager": "local",
            "step_params": json.dumps(params, sort_keys=True, default=str)}
    run_id = project.create_child_run(experiment, parent, step, tags)
    log.info("step %s: running as child run %s", step, run_id)
    try:
        project.run_project_step(str(root), step, params, run_id)
    except Exception as exc:  # mlflow's ExecutionException: the step printed its own error above
        raise PipelineError(f"step {step} failed (run {run_id}); its output above says why") from exc
    return {"step": step, "run_id": run_id, "reused": False, "seconds": time.perf_counter() - start}


class PipelineError(UserError):
    """A step of the pipeline failed; its own output names the problem."""
