"""Entry point ``features``: extract (or reuse) the 25 CV features of the covers; log the table,
per-genre means and per-genre box plots of every feature group."""
from __future__ import annotations

import logging
import time

from genreclf.config import Resolved, as_flat_dict
from genreclf.entrypoints.skeleton import entry_run, open_covers
from genreclf.features.cover25 import FEATURE_GROUPS, FEATURE_NAMES, FEATURE_VERSION, GROUP_OF, WORK, features_for
from genreclf.models.rf.forest import distribution_figure
from genreclf.tracking import runs

log = logging.getLogger(__name__)


def main(resolved: Resolved) -> dict:
    covers = open_covers(resolved)
    params = {**as_flat_dict(resolved.data), "feature_version": FEATURE_VERSION, "work_size": WORK}
    with entry_run(resolved, covers, f"features-{covers.digest[:8]}", "features", params=params) as run_id:
        start = time.perf_counter()
        table = features_for(covers)
        seconds = time.perf_counter() - start
        runs.log_metrics({"features_seconds": seconds, "n_features": len(FEATURE_NAMES)})
        full = table.reset_index()
        full.insert(1, "genre", [covers.genres[k] for k in covers.labels])
        full.insert(2, "split", covers.split)
        runs.log_table(full, "features/features.parquet")
        runs.log_table(full.groupby("genre")[FEATURE_NAMES].mean().reset_index(), "features/genre_means.csv")
        runs.log_json({n: {"group": GROUP_OF[n]} for n in FEATURE_NAMES}, "features/feature_groups.json")
        runs.log_figures({f"features/dist_{g}.png": distribution_figure(table, covers.labels, covers.genres, g)
                          for g in FEATURE_GROUPS})
    log.info("features of %d covers in %.1fs (run %s)", len(covers), seconds, run_id)
    return {"run_id": run_id, "n_covers": len(covers), "features_seconds": seconds}
