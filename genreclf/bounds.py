"""Allowed values of every parameter, checked when a config section is resolved (``config.build``),
so a bad value is refused up front with a message naming the parameter and its range - never a deep
library traceback later, never silently accepted (``per_genre=-5``, ``lr=inf``, ``port=99999``).

Keyed by the config class name: (low, high), both inclusive; "nonempty" for strings that must name
something. Floats must also be finite.
"""
from __future__ import annotations

import math
from typing import Any, Union

INF = math.inf
Rule = Union[tuple[float, float], str]
BOUNDS: dict[str, dict[str, Rule]] = {
    "DataConfig": {"data": "nonempty", "experiment": "nonempty", "per_genre": (0, INF), "seed": (0, 2**32 - 1),
                   "val_frac": (0.01, 0.9), "test_frac": (0.01, 0.9), "cache_size": (16, 2048),
                   "dedup_distance": (0, 64)},
    "RFConfig": {"n_estimators": (1, 100_000), "max_depth": (0, 10_000), "min_samples_leaf": (1, INF),
                 "seed": (0, 2**32 - 1), "n_jobs": (-1, 1024)},
    "CNNConfig": {"lp_epochs": (0, 10_000), "epochs": (1, 10_000), "batch_size": (2, 4096), "lr": (1e-8, 10.0),
                  "backbone_lr_mult": (0.0, 100.0), "weight_decay": (0.0, 10.0), "warmup_epochs": (0, 10_000),
                  "label_smoothing": (0.0, 0.99), "image_size": (32, 1024), "aug_scale_min": (0.01, 1.0),
                  "patience": (0, 10_000), "workers": (-1, 256), "seed": (0, 2**32 - 1),
                  "gradcam_per_genre": (0, 1000), "max_steps_per_epoch": (0, INF)},
    "TuneConfig": {"n_trials": (1, 100_000), "timeout": (0.0, INF), "n_workers": (1, 256), "cv_folds": (2, 100),
                   "seed": (0, 2**32 - 1)},
    "PromoteConfig": {"model_name": "nonempty", "margin": (-1.0, 1.0), "metric": "nonempty"},
    "ServeConfig": {"host": "nonempty", "port": (1, 65535), "alias": "nonempty", "max_upload_mb": (0.01, 1024.0)},
    "BenchConfig": {"repeats": (1, 1000), "image_size": (32, 1024), "batch_size": (1, 4096),
                    "rest_requests": (1, 100_000)},
}
NOT_ZERO = {("RFConfig", "n_jobs"): "-1 (all cores) or a count >= 1"}


def problem(cfg: Any) -> str | None:
    """What is wrong with the first parameter of ``cfg`` outside its allowed values; None if all fit."""
    cls = type(cfg).__name__
    for name, rule in BOUNDS.get(cls, {}).items():
        value = getattr(cfg, name)
        if isinstance(rule, str):  # "nonempty"
            if not str(value).strip():
                return f"parameter {name}={value!r}: must not be empty"
            continue
        low, high = rule
        if isinstance(value, float) and not math.isfinite(value):
            return f"parameter {name}={value!r}: must be a finite number in [{low}, {high}]"
        if not low <= value <= high:
            allowed = f">= {low}" if high == INF else f"[{low}, {high}]"
            return f"parameter {name}={value!r}: allowed range is {allowed}"
        if (cls, name) in NOT_ZERO and value == 0:
            return f"parameter {name}=0: use {NOT_ZERO[(cls, name)]}"
    return None
