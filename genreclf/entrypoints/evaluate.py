"""Entry point ``evaluate``: every model side by side on repeated splits of one cover source.

One parent run holds the comparison (``evaluation/summary.md`` + ``.csv``, ``comparison.png``, the
optional learning curve, the feature-extraction speed ratio); each model gets a child run with its
per-split scores, mean accuracy / macro-F1 with 95 % intervals, per-genre F1 and the confusion
matrix summed over the splits' test folds. The table is printed as well.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from genreclf.config import as_flat_dict
from genreclf.data.covers import load_covers
from genreclf.errors import UserError
from genreclf.evaluation import compare, report
from genreclf.evaluation.splits import repeated_splits, subsample_train
from genreclf.evaluation.tables import speed_ratio, tables_for
from genreclf.metrics import confusion_figure
from genreclf.tracking import runs as tracking

log = logging.getLogger(__name__)


def parse_sizes(spec: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in spec.split(",") if s.strip() and s.strip() != "all"})
    except ValueError:
        raise UserError(f"learning_curve={spec!r}: expected covers per genre, e.g. 25,50,100") from None
    if any(s < 2 for s in sizes):
        raise UserError(f"learning_curve={spec!r}: each size must be >= 2 covers per genre")
    return sizes


def main(resolved) -> dict:
    data, cfg = resolved.data, resolved.evaluate
    models = compare.parse_models(cfg.models)
    curve_models = compare.parse_models(cfg.curve_models) if cfg.learning_curve else []
    sizes = parse_sizes(cfg.learning_curve) if cfg.learning_curve else []
    if cfg.repeats < 1 or cfg.cnn_size < 16 or cfg.cnn_epochs < 1:  # before any expensive work
        raise UserError(f"repeats={cfg.repeats}, cnn_epochs={cfg.cnn_epochs}: must be >= 1; "
                        f"cnn_size={cfg.cnn_size}: must be >= 16")
    settings = compare.Settings(seed=data.seed, cnn_size=cfg.cnn_size, cnn_epochs=cfg.cnn_epochs)
    tracking.configure(data.experiment)
    start = time.perf_counter()
    covers = load_covers(data)
    views = repeated_splits(covers, data, cfg.repeats)
    with tracking.start_run("evaluate", "evaluate", "evaluation") as parent:
        tracking.log_config(resolved)
        tracking.log_new_params(as_flat_dict(data, cfg))
        tracking.log_coverset(covers)
        tables, blobs = tables_for(covers, data, set(models) | set(curve_models))
        rows = [_model_child(name, views, tables, settings, covers.genres, parent) for name in models]
        table = pd.DataFrame(rows)
        text = report.markdown(table, covers.genres)
        tracking.log_text(text + "\n", "evaluation/summary.md")
        tracking.log_table(table, "evaluation/summary.csv")
        tracking.log_figure(report.comparison_figure(table, f"{covers.source}: {len(covers)} covers, "
                                                     f"{cfg.repeats} splits"), "evaluation/comparison.png")
        tracking.log_metrics({f"{r['model']}_{m}": r[m] for r in rows for m in ("accuracy", "macro_f1")})
        speed = speed_ratio(blobs, cfg.speed_covers) if cfg.speed_covers > 0 else {}
        tracking.log_metrics(speed)
        if sizes:
            curve = learning_curve(views, tables, settings, curve_models, sizes)
            tracking.log_table(curve, "evaluation/learning_curve.csv")
            tracking.log_figure(report.learning_curve_figure(curve, f"{covers.source}: learning curve"),
                                "evaluation/learning_curve.png")
        tracking.log_metrics({"evaluate_seconds": time.perf_counter() - start})
    print(f"{len(covers)} covers, {len(covers.genres)} genres, {cfg.repeats} repeated 70/15/15 splits "
          f"(test folds of ~{len(views[0].indices('test'))} covers); mean [95 % interval]:")
    print(text)
    if speed:
        print(f"feature extraction: ours {1000 * speed['features_ours_s_per_cover']:.1f} ms/cover, reference "
              f"{1000 * speed['features_reference_s_per_cover']:.1f} ms/cover -> {speed['features_speed_ratio']:.1f}x "
              f"faster ({int(speed['features_speed_covers'])} covers of this source)")
    print(f"wall time {time.perf_counter() - start:.0f}s, run {parent}")
    return {"run_id": parent, "table": table, "speed": speed}


def _model_child(name: str, views, tables, settings, genres: list[str], parent: str) -> dict:
    """Run one model on every split in its own child run; return its summary row."""
    with tracking.start_run(name, "evaluate", name, parent_run_id=parent):
        records = compare.run_model(name, views, tables, settings)
        scores = report.split_scores(records, len(genres))
        row = report.summary_row(name, compare.LABELS[name], scores, genres)
        for _, s in scores.iterrows():
            tracking.log_metrics({"split_accuracy": s["accuracy"], "split_macro_f1": s["macro_f1"]},
                                 step=int(s["split"]))
        tracking.log_metrics({k: v for k, v in row.items() if isinstance(v, float)})
        tracking.log_table(scores.rename(columns={f"f1_{k}": f"f1_{g}" for k, g in enumerate(genres)}),
                           "evaluation/splits.csv")
        cm = confusion(records, genres)
        tracking.log_json({"genres": genres, "counts": cm.tolist(), "rows": "true", "cols": "predicted",
                           "summed_over_splits": len(views)}, "evaluation/confusion_matrix.json")
        tracking.log_figure(confusion_figure(cm, genres, f"{compare.LABELS[name]} - test folds of {len(views)} "
                                             f"splits (accuracy {row['accuracy']:.1%})"),
                            "evaluation/confusion_matrix.png")
    return row


def confusion(records, genres) -> np.ndarray:
    return report.confusion(records, len(genres))


def learning_curve(views, tables, settings, models: list[str], sizes: list[int]) -> pd.DataFrame:
    """Test accuracy per model at each cap of training covers per genre (val and test unchanged)."""
    largest = max(int(np.bincount(v.labels[v.indices("train")]).max()) for v in views)
    rows = []
    for size in [s for s in sizes if s < largest] + [largest]:
        capped = [subsample_train(v, size, settings.seed) for v in views]
        for name in models:
            records = compare.run_model(name, capped, tables, settings)
            acc = report.interval([float((r["proba"].argmax(1) == r["y"]).mean()) for r in records])
            rows.append({"model": name, "label": compare.LABELS[name], "train_per_genre": size,
                         "accuracy": acc[0], "accuracy_low": acc[1], "accuracy_high": acc[2]})
            log.info("learning curve: %s at %d covers per genre: %.3f", name, size, acc[0])
    return pd.DataFrame(rows)
