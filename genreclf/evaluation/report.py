"""Summaries of repeated-split results: mean with a 95 % t-interval, tables and plots."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from genreclf.plotting import plt


def interval(values) -> tuple[float, float, float]:
    """(mean, low, high) of the 95 % Student-t interval of the mean, clipped to [0, 1] (scores are shares);
    one value gives a zero-width interval."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def split_scores(records: list[dict], n_genres: int) -> pd.DataFrame:
    """Accuracy, macro-F1 and per-genre F1 of each split (one row per split)."""
    labels = list(range(n_genres))
    rows = []
    for rec in records:
        pred = rec["proba"].argmax(1)
        per = f1_score(rec["y"], pred, labels=labels, average=None, zero_division=0)
        rows.append({"split": rec["split"], "accuracy": accuracy_score(rec["y"], pred),
                     "macro_f1": f1_score(rec["y"], pred, labels=labels, average="macro", zero_division=0),
                     "seconds": rec["seconds"], **{f"f1_{k}": float(f) for k, f in enumerate(per)}})
    return pd.DataFrame(rows)


def confusion(records: list[dict], n_genres: int) -> np.ndarray:
    """The confusion matrix summed over the splits' test folds (rows true, columns predicted)."""
    return sum(confusion_matrix(r["y"], r["proba"].argmax(1), labels=list(range(n_genres))) for r in records)


def summary_row(model: str, label: str, scores: pd.DataFrame, genres: list[str]) -> dict:
    acc, f1 = interval(scores["accuracy"]), interval(scores["macro_f1"])
    row = {"model": model, "label": label, "splits": len(scores),
           "accuracy": acc[0], "accuracy_low": acc[1], "accuracy_high": acc[2],
           "macro_f1": f1[0], "macro_f1_low": f1[1], "macro_f1_high": f1[2],
           "seconds_per_split": float(scores["seconds"].mean())}
    row.update({f"f1_{g}": float(scores[f"f1_{k}"].mean()) for k, g in enumerate(genres)})
    return row


def _pct(mean: float, low: float, high: float) -> str:
    return f"{100 * mean:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def markdown(table: pd.DataFrame, genres: list[str]) -> str:
    """The summary as a markdown table: mean [95 % interval] over the splits, per-genre F1 means."""
    head = ["model", "accuracy", "macro-F1", *[f"F1 {g}" for g in genres], "s/split"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [r["label"], _pct(r["accuracy"], r["accuracy_low"], r["accuracy_high"]),
                 _pct(r["macro_f1"], r["macro_f1_low"], r["macro_f1_high"]),
                 *[f"{r[f'f1_{g}']:.2f}" for g in genres], f"{r['seconds_per_split']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_figure(table: pd.DataFrame, title: str):
    """Accuracy and macro-F1 per model, bars at the mean, whiskers at the 95 % interval."""
    fig, ax = plt.subplots(figsize=(1.6 * len(table) + 3, 4.5))
    x = np.arange(len(table))
    for offset, metric, colour in ((-0.2, "accuracy", "tab:blue"), (0.2, "macro_f1", "tab:orange")):
        mean = table[metric].to_numpy()
        err = np.vstack([mean - table[f"{metric}_low"].to_numpy(), table[f"{metric}_high"].to_numpy() - mean])
        ax.bar(x + offset, mean, 0.4, yerr=err, capsize=4, color=colour, label=metric.replace("_", "-"))
    ax.set_xticks(x, table["label"], rotation=20, ha="right")
    ax.set_ylabel("test score (mean, 95 % interval)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curve_figure(curve: pd.DataFrame, title: str):
    """Test accuracy against training covers per genre, one line per model with its 95 % interval."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for model, part in curve.groupby("label", sort=False):
        part = part.sort_values("train_per_genre")
        ax.errorbar(part["train_per_genre"], part["accuracy"], capsize=4, marker="o", label=model,
                    yerr=[part["accuracy"] - part["accuracy_low"], part["accuracy_high"] - part["accuracy"]])
    ax.set_xscale("log")
    sizes = sorted(curve["train_per_genre"].unique())
    ax.set_xticks(sizes, [str(int(v)) for v in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training covers per genre (at most; log scale)")
    ax.set_ylabel("test accuracy (mean, 95 % interval)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
