"""The models ``evaluate`` compares: two baselines of its own and every model family's rows.

A row's runner takes one split (a CoverSet view) and the per-cover inputs computed once for the
whole cover set, and returns the test covers' probabilities. Nothing is selected on test: each
family trains on the split's train covers and early-stops or picks its knobs on val.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from genreclf.config import EvaluateConfig, RFConfig
from genreclf.errors import UserError
from genreclf.models import FAMILIES, EvalRow, resolve_callable
from genreclf.models.rf.forest import fit_rf, predict_proba

log = logging.getLogger(__name__)
REFERENCE = "reference"  # the benchmark reference's 25 features, from the covers' original bytes (tables.py)
Inputs = dict[str, np.ndarray]


@dataclass
class Settings:
    seed: int = 42
    options: EvaluateConfig = field(default_factory=EvaluateConfig)


def majority(view, inputs: Inputs, seed: int, options: EvaluateConfig) -> np.ndarray:
    counts = np.bincount(view.labels[view.indices("train")], minlength=len(view.genres))
    proba = np.zeros((len(view.indices("test")), len(view.genres)))
    proba[:, counts.argmax()] = 1.0
    return proba


def rf_reference(view, inputs: Inputs, seed: int, options: EvaluateConfig) -> np.ndarray:
    """The project's RF defaults on the reference implementation's features (full-resolution covers)."""
    table, tr, te = inputs[REFERENCE], view.indices("train"), view.indices("test")
    model = fit_rf(table[tr], view.labels[tr], RFConfig(seed=seed, register=False))
    return predict_proba(model, table[te], len(view.genres))


BUILTIN_ROWS = {
    "majority": EvalRow("majority class", "genreclf.evaluation.compare:majority"),
    "rf_reference": EvalRow("RF, reference features", "genreclf.evaluation.compare:rf_reference", {REFERENCE: ""}),
}


def rows() -> dict[str, EvalRow]:
    """Every row evaluate can run: its baselines, then each registered family's rows."""
    return {**BUILTIN_ROWS, **{key: row for f in FAMILIES.values() for key, row in f.rows.items()}}


def label(name: str) -> str:
    return rows()[name].label


def needed_inputs(names: list[str]) -> dict[str, str]:
    """The per-cover inputs (name -> builder) the rows ``names`` read."""
    known = rows()
    return {key: builder for n in names for key, builder in known[n].inputs.items()}


def parse_models(spec: str) -> list[str]:
    known = rows()
    names = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise UserError(f"models={spec!r}: unknown model(s) {unknown}; choose from {', '.join(known)}")
    return names


def run_model(name: str, views: list, inputs: Inputs, settings: Settings) -> list[dict]:
    """One record per split: test labels, probabilities and the seconds train + predict took."""
    runner = resolve_callable(rows()[name].runner)
    out = []
    for r, view in enumerate(views):
        start = time.perf_counter()
        proba = runner(view, inputs, settings.seed + r, settings.options)
        seconds = time.perf_counter() - start
        y = view.labels[view.indices("test")]
        out.append({"split": r, "y": y, "proba": proba, "seconds": seconds})
        log.info("%s split %d: accuracy %.3f (%.1fs)", name, r, float((proba.argmax(1) == y).mean()), seconds)
    return out


def with_seed(settings: Settings, seed: int) -> Settings:
    return dataclasses.replace(settings, seed=seed)
