"""Which process owns a RUNNING run: recorded as tags when a process opens a run, checked before
another process continues it (``resume``) and when a run is found RUNNING with its owner gone.

A run carries the owner's identity (``tracking/liveness.py``) as ``owner_<part>`` tags: ``owner_host``,
``owner_machine``, ``owner_boot``, ``owner_pidns``, ``owner_pid`` and ``owner_started`` (its start time,
so a recycled pid is not mistaken for the owner). A run is reaped only when its owner is proven gone:
an owner on another host or in another container is left alone.

A run that fails gets its reason in the ``failure_reason`` tag. When the store itself cannot be
written (a full disk), the reason waits in a file beside the cache until the next process that opens
a run in the experiment finds the run RUNNING with its owner gone and marks it FAILED (``reap_orphans``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from genreclf.data.covers import cache_root
from genreclf.tracking import liveness

log = logging.getLogger(__name__)
PREFIX = "owner_"
TAGS = tuple(PREFIX + part for part in ("host", "machine", "boot", "pidns", "pid", "started"))


def owner_tags() -> dict[str, str]:
    return {PREFIX + k: repr(v) if isinstance(v, float) else str(v) for k, v in liveness.identity().items()}


def owner_alive(tags: Mapping[str, str]) -> bool | None:
    """True/False for an owner this process can judge; None when unknown (no tags, another host or container)."""
    return liveness.alive({k.removeprefix(PREFIX): v for k, v in tags.items() if k in TAGS})


def failure_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]


def tag_failure(client: MlflowClient, run_id: str, exc: BaseException) -> None:
    """Record why ``run_id`` failed on the run, or (store not writable) in a pending file."""
    try:
        client.set_tag(run_id, "failure_reason", failure_reason(exc))
    except Exception as again:
        log.error("could not record the failure on run %s (%s)", run_id, failure_reason(again))
        try:
            _pending(run_id).write_text(failure_reason(exc))
        except OSError:
            pass


def _pending(run_id: str) -> Path:
    root = cache_root() / "failed-runs"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{run_id}.txt"


def reap_orphans(client: MlflowClient, experiment_id: str | None, keep: str | None = None) -> int:
    """Mark FAILED the RUNNING runs of the experiment whose owner process on this host is gone
    (a killed training, refit or trial), with the reason in ``failure_reason``."""
    try:
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'",
                                     max_results=1000) if experiment_id else []
    except MlflowException:
        return 0
    n = 0
    for run in running:
        if run.info.run_id != keep and owner_alive(run.data.tags) is False:
            pending = _pending(run.info.run_id)
            why = pending.read_text() if pending.exists() else (
                f"its process died (killed or crashed) while the run was open (pid {run.data.tags.get('owner_pid')})")
            client.set_tag(run.info.run_id, "failure_reason", why)
            client.set_terminated(run.info.run_id, "FAILED")
            pending.unlink(missing_ok=True)
            log.warning("run %s was left RUNNING by a process that is gone; marked FAILED", run.info.run_id)
            n += 1
    return n
