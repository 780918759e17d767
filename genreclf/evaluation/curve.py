"""The learning curve: test accuracy against the number of training covers per genre.

Each point caps every split's train fold at a number of covers per genre (val and test folds stay
as they are), so it tells a user whether more covers of their own would help.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from genreclf.errors import UserError
from genreclf.evaluation import compare, report
from genreclf.evaluation.compare import Inputs, Settings
from genreclf.evaluation.splits import subsample_train

log = logging.getLogger(__name__)


def parse_sizes(spec: str) -> list[int]:
    """``"25,50,100"`` -> [25, 50, 100] (``all`` is always added by :func:`learning_curve`)."""
    try:
        sizes = sorted({int(s) for s in spec.split(",") if s.strip() and s.strip() != "all"})
    except ValueError:
        raise UserError(f"learning_curve={spec!r}: expected covers per genre, e.g. 25,50,100") from None
    if any(s < 2 for s in sizes):
        raise UserError(f"learning_curve={spec!r}: each size must be >= 2 covers per genre")
    return sizes


def learning_curve(views: list, inputs: Inputs, settings: Settings, models: list[str],
                   sizes: list[int]) -> pd.DataFrame:
    """Test accuracy (mean, 95 % interval over the splits) per model at each cap of training covers per genre."""
    largest = max(int(np.bincount(v.labels[v.indices("train")]).max()) for v in views)
    rows = []
    for size in [s for s in sizes if s < largest] + [largest]:
        capped = [subsample_train(v, size, settings.seed) for v in views]
        for name in models:
            records = compare.run_model(name, capped, inputs, settings)
            acc = report.interval([float((r["proba"].argmax(1) == r["y"]).mean()) for r in records])
            rows.append({"model": name, "label": compare.label(name), "train_per_genre": size,
                         "accuracy": acc[0], "accuracy_low": acc[1], "accuracy_high": acc[2]})
            log.info("learning curve: %s at %d covers per genre: %.3f", name, size, acc[0])
    return pd.DataFrame(rows)
