"""Where each metric shows up on the MLflow run page.

MLflow's UI puts metrics without a ``/`` in one "Model metrics" section and gives every prefix before
a ``/`` a section of its own. So the headline metrics every model shares (``val_*``, ``test_*``,
``train_loss``, ``best_value``, ...) keep their plain names and come first; diagnostics get a group:
``data/covers``, ``train/lr``, ``train/best_epoch``, ``trial/work_s``, ``study/n_pruned``. Code keeps
using the plain names; :func:`display_name` renames at logging time, in one place.
"""
from __future__ import annotations

GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("data_covers", "data_skipped", "data_duplicates_dropped"),
    "train": ("lr", "epoch_time_s", "images_per_s", "best_epoch", "epochs_run", "fit_seconds",
              "features_seconds", "n_features"),
    "trial": ("trial_work_s", "trial_bookkeeping_s", "trial_last_value"),
    "study": ("n_finished", "n_complete", "n_pruned", "n_fail", "search_seconds", "trial_work_s_median",
              "trial_bookkeeping_s_median", "bookkeeping_share", "overhead_s_per_trial", "best_trial"),
}
_DISPLAY = {name: f"{group}/{name.removeprefix(group + '_').removeprefix('trial_' if group == 'trial' else '')}"
            for group, names in GROUPS.items() for name in names}


def display_name(metric: str) -> str:
    """The name a metric is logged under (``data_covers`` -> ``data/covers``; headline names unchanged)."""
    return _DISPLAY.get(metric, metric)
