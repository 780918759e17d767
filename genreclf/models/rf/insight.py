"""What the demo says about one cover: its 25 CV features against the training data's per-genre
averages (a table and a plot), and a short plain-language insight derived from those numbers.

z-score of a feature: (value - average) / the pooled within-genre std of the train split, so 25
differently scaled features share one axis. "Pull" towards a genre: the cover's z-score against the
*other* genres' average, signed so that positive means "in the direction in which this genre
differs from the others", times the Random Forest's importance of the feature (scaled to mean 1).
A large pull reads "this cover looks like <genre> covers on a feature the forest relies on".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genreclf.features import cover25
from genreclf.plotting import figure_to_array, plt

TOP_PULLS = 3
Z_CLIP = 4.0  # one odd feature (e.g. a face where no train cover had one) must not drown the rest


@dataclass
class TrainStats:
    """Per-genre feature statistics of the train split and the forest's importances (album-genre-rf)."""
    means: pd.DataFrame                 # genre x feature
    stds: pd.DataFrame | None = None    # genre x feature
    importances: pd.Series | None = None

    @classmethod
    def of(cls, rf_model) -> TrainStats | None:
        if rf_model is None:
            return None
        return cls(rf_model.genre_means, getattr(rf_model, "genre_stds", None), getattr(rf_model, "importances", None))

    def scale(self) -> pd.Series:
        """Per-feature unit: pooled within-genre std (spread of the averages without stds), never ~0."""
        pooled = np.sqrt((self.stds ** 2).mean(axis=0)) if self.stds is not None else self.means.std(axis=0, ddof=0)
        floor = 1e-3 * (self.means.abs().max(axis=0) + 1e-6)
        return pooled.where(pooled > floor, floor)

    def weights(self) -> pd.Series:
        names = list(self.means.columns)
        if self.importances is None:
            return pd.Series(1.0, index=names)
        w = pd.Series(self.importances, dtype=float).reindex(names).fillna(0.0)
        return w / w.mean() if w.sum() > 0 else pd.Series(1.0, index=names)

    def pulls(self, values: dict[str, float], genre: str) -> pd.DataFrame:
        """Per feature: the cover's value, ``genre``'s and the other genres' averages, z and pull."""
        x = pd.Series(values, dtype=float).reindex(self.means.columns)
        here, others = self.means.loc[genre], self.means.drop(index=genre).mean(axis=0)
        z = ((x - others) / self.scale() * np.sign(here - others)).clip(-Z_CLIP, Z_CLIP)
        out = pd.DataFrame({"value": x, "genre_avg": here, "others_avg": others, "z": z, "pull": z * self.weights()})
        return out.sort_values("pull", ascending=False)


def feature_table(values: dict[str, float], stats: TrainStats | None) -> pd.DataFrame:
    """One row per feature, grouped by kind: the cover's value next to each genre's train average."""
    rows = []
    for kind, names in cover25.FEATURE_GROUPS.items():
        for name in names:
            row = {"kind": kind, "feature": name, "cover": _fmt(values.get(name))}
            if stats is not None and name in stats.means.columns:
                col = stats.means[name]
                row.update({g: _fmt(v) for g, v in col.items()})
                row["closest"] = str((col - values.get(name, np.nan)).abs().idxmin())
            rows.append(row)
    return pd.DataFrame(rows)


def feature_figure(values: dict[str, float], stats: TrainStats | None, truth: str | None) -> np.ndarray:
    """RGB plot: per kind, each feature's genre averages (dots) and the cover (black diamond) as
    z-scores around the mean of the genre averages."""
    kinds = cover25.FEATURE_GROUPS
    fig, axes = plt.subplots(len(kinds), 1, figsize=(7.5, 1.6 + 0.34 * len(cover25.FEATURE_NAMES)),
                             gridspec_kw={"height_ratios": [len(v) for v in kinds.values()]})
    axes = np.atleast_1d(axes)
    colours = plt.get_cmap("tab10")
    for ax, (kind, names) in zip(axes, kinds.items()):
        y = np.arange(len(names))
        x = np.array([values.get(n, np.nan) for n in names], dtype=float)
        if stats is not None:
            m = stats.means[names]
            centre, scale = m.mean(axis=0).to_numpy(), stats.scale()[names].to_numpy()
            for k, (genre, row) in enumerate(m.iterrows()):
                ax.scatter(np.clip((row.to_numpy() - centre) / scale, -Z_CLIP, Z_CLIP), y, s=40, alpha=0.85,
                           color=colours(k % 10), label=f"{genre} avg" + (" (true genre)" if genre == truth else ""))
            x = np.clip((x - centre) / scale, -Z_CLIP, Z_CLIP)
            ax.set_xlim(-Z_CLIP - 0.3, Z_CLIP + 0.3)
        ax.scatter(x, y, marker="D", s=60, color="black", label="this cover", zorder=3)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_title(kind, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(f"z-score (within-genre std of the train split, clipped at ±{Z_CLIP:g})" if stats
                        else "raw value (no training averages without album-genre-rf)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(3, len(labels)), frameon=False)
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1))
    return figure_to_array(fig)


def _top(p: dict[str, float] | None):
    return max(p.items(), key=lambda kv: kv[1]) if p else None


def insight_text(values: dict[str, float], stats: TrainStats | None, rf_p: dict[str, float] | None,
                 cnn_p: dict[str, float] | None, truth: str | None) -> str:
    """A few plain sentences: what each model says, whether they agree, whether they are right, and
    the features that pull the forest towards its choice."""
    rf, cnn = _top(rf_p), _top(cnn_p)
    said = " · ".join(s for s in (f"**Random Forest**: {rf[0]} ({rf[1]:.0%})" if rf else "",
                                  f"**CNN**: {cnn[0]} ({cnn[1]:.0%})" if cnn else "") if s)
    if not said:
        return "No model is available: see the message at the top of the page."
    if rf and cnn:
        said += (" — the two models **agree**." if rf[0] == cnn[0] else
                 f" — the two models **disagree**: the features point to {rf[0]}, the pixels to {cnn[0]}.")
    lines = [said]
    if truth:
        right = [n for n, t in (("Random Forest", rf), ("CNN", cnn)) if t and t[0] == truth]
        lines.append(f"**True genre**: {truth} — " + (f"{' and '.join(right)} got it right." if right
                                                       else "neither model got it right."))
    else:
        lines.append("**True genre**: unknown (uploaded cover).")
    if rf and stats is not None and rf[0] in stats.means.index and len(stats.means) > 1:
        top = stats.pulls(values, rf[0]).head(TOP_PULLS)
        top = top[top["pull"] > 0]
        if len(top):
            lines.append(f"**Features pulling the forest towards {rf[0]}** (z-score × importance):\n" +
                         "\n".join(f"- **{name}** ({cover25.GROUP_OF[name]}) = {_fmt(r.value)}: {rf[0]} covers "
                                   f"average {_fmt(r.genre_avg)}, the other genres {_fmt(r.others_avg)}"
                                   for name, r in top.iterrows()))
        else:
            lines.append(f"No single feature looks typically {rf[0]}: the forest's vote comes from many small "
                         f"differences.")
    return "\n\n".join(lines)


def _fmt(v) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
