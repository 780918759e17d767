"""Entry point ``evaluate``: every model side by side on repeated splits of one cover source.

One parent run holds the comparison (``evaluation/summary.md`` + ``.csv``, ``comparison.png``, the
optional learning curve, the feature-extraction speed ratio); each model gets a child run with its
per-split scores, mean accuracy / macro-F1 with 95 % intervals, per-genre F1 and the confusion
matrix summed over the splits' test folds. The table is printed as well. The measuring itself is
``genreclf.evaluation``; this module logs and prints what it returns.
"""
from __future__ import annotations

import logging
import time

import pandas as pd

from genreclf.config import EvaluateConfig, Resolved, as_flat_dict
from genreclf.data.covers import CoverSet
from genreclf.entrypoints.skeleton import entry_run, open_covers
from genreclf.evaluation import compare, report
from genreclf.evaluation.compare import Inputs, Settings
from genreclf.evaluation.curve import learning_curve, parse_sizes
from genreclf.evaluation.splits import repeated_splits
from genreclf.evaluation.tables import inputs_for, speed_ratio
from genreclf.metrics import confusion_figure
from genreclf.tracking import runs

log = logging.getLogger(__name__)


def check(cfg: EvaluateConfig) -> tuple[list[str], list[str], list[int]]:
    """(models, learning-curve models, learning-curve sizes); every parameter checked before any work."""
    models = compare.parse_models(cfg.models)
    curve_models = compare.parse_models(cfg.curve_models) if cfg.learning_curve else []
    sizes = parse_sizes(cfg.learning_curve) if cfg.learning_curve else []
    return models, curve_models, sizes


def main(resolved: Resolved) -> dict:
    data, cfg = resolved.data, resolved.evaluate
    models, curve_models, sizes = check(cfg)
    settings = Settings(seed=data.seed, options=cfg)
    start = time.perf_counter()
    covers = open_covers(resolved)
    views = repeated_splits(covers, data, cfg.repeats)
    with entry_run(resolved, covers, "evaluate", "evaluation", params=as_flat_dict(data, cfg)) as parent:
        inputs, blobs = inputs_for(covers, data, compare.needed_inputs(models + curve_models))
        table = pd.DataFrame([model_child(name, views, inputs, settings, covers.genres, parent) for name in models])
        text = report.markdown(table, covers.genres)
        log_comparison(table, text, covers, cfg.repeats)
        # the speed check times the reference features: only worth its minutes when their row is asked for
        speed = speed_ratio(blobs, cfg.speed_covers) if cfg.speed_covers > 0 and "rf_reference" in models else {}
        runs.log_metrics(speed)
        if sizes:
            curve = learning_curve(views, inputs, settings, curve_models, sizes)
            runs.log_table(curve, "evaluation/learning_curve.csv")
            runs.log_figure(report.learning_curve_figure(curve, f"{covers.source}: learning curve"),
                            "evaluation/learning_curve.png")
        runs.log_metrics({"evaluate_seconds": time.perf_counter() - start})
    print_summary(text, speed, covers, views, cfg.repeats)
    print(f"wall time {time.perf_counter() - start:.0f}s, run {parent}")
    return {"run_id": parent, "table": table, "speed": speed}


def log_comparison(table: pd.DataFrame, text: str, covers: CoverSet, repeats: int) -> None:
    """The parent run's summary: markdown + CSV table, the bar plot, each model's mean scores."""
    runs.log_text(text + "\n", "evaluation/summary.md")
    runs.log_table(table, "evaluation/summary.csv")
    title = f"{covers.source}: {len(covers)} covers, {repeats} splits"
    runs.log_figure(report.comparison_figure(table, title), "evaluation/comparison.png")
    runs.log_metrics({f"{r['model']}_{m}": r[m] for _, r in table.iterrows() for m in ("accuracy", "macro_f1")})


def print_summary(text: str, speed: dict[str, float], covers: CoverSet, views: list, repeats: int) -> None:
    print(f"{len(covers)} covers, {len(covers.genres)} genres, {repeats} repeated 70/15/15 splits "
          f"(test folds of ~{len(views[0].indices('test'))} covers); mean [95 % interval]:")
    print(text)
    if repeats < 5:  # Student-t with n - 1 < 4 degrees of freedom: the intervals say little
        print(f"note: with {repeats} splits the 95 % intervals are wide; use --repeats 5 or more to compare models")
    if speed:
        print(f"feature extraction: ours {1000 * speed['features_ours_s_per_cover']:.1f} ms/cover, reference "
              f"{1000 * speed['features_reference_s_per_cover']:.1f} ms/cover -> {speed['features_speed_ratio']:.1f}x "
              f"faster ({int(speed['features_speed_covers'])} covers of this source)")


def model_child(name: str, views: list, inputs: Inputs, settings: Settings, genres: list[str], parent: str) -> dict:
    """Run one model on every split in its own child run; return its summary row."""
    with runs.start_run(name, "evaluate", name, parent_run_id=parent):
        records = compare.run_model(name, views, inputs, settings)
        scores = report.split_scores(records, len(genres))
        row = report.summary_row(name, compare.label(name), scores, genres)
        for _, s in scores.iterrows():
            runs.log_metrics({"split_accuracy": s["accuracy"], "split_macro_f1": s["macro_f1"]},
                             step=int(s["split"]))
        runs.log_metrics({k: v for k, v in row.items() if isinstance(v, float)})
        runs.log_table(scores.rename(columns={f"f1_{k}": f"f1_{g}" for k, g in enumerate(genres)}),
                       "evaluation/splits.csv")
        cm = report.confusion(records, len(genres))
        runs.log_json({"genres": genres, "counts": cm.tolist(), "rows": "true", "cols": "predicted",
                       "summed_over_splits": len(views)}, "evaluation/confusion_matrix.json")
        runs.log_figure(confusion_figure(cm, genres, f"{compare.label(name)} - test folds of {len(views)} "
                                         f"splits (accuracy {row['accuracy']:.1%})"),
                        "evaluation/confusion_matrix.png")
    return row
