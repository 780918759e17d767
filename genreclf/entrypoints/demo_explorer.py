"""What the demo page computes: one slot per registered model family, the test covers, and every
output a page event returns.

The slots come from ``FAMILIES``, so a family added to the registry gets its own predictions (or a
"not available" message) without any change here. Two families have extras the page shows when
they are loaded: the Random Forest's features and training statistics, and the CNN's Grad-CAM
(found by what the predictor can do: ``features`` and ``explain``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from genreclf.config import DataConfig  # noqa: E402
from genreclf.data.covers import load_covers  # noqa: E402
from genreclf.data.images import BadImageError, decode_rgb  # noqa: E402
from genreclf.errors import UserError  # noqa: E402
from genreclf.features import cover25  # noqa: E402
from genreclf.models import FAMILIES, family_of_model  # noqa: E402
from genreclf.models.rf.insight import TrainStats, feature_figure, feature_table, insight_text  # noqa: E402
from genreclf.tracking import registry  # noqa: E402

log = logging.getLogger(__name__)
ALL = "All genres"
GALLERY_MAX = 48  # thumbnails per filter; the dropdown lists every test cover
FEATURES, CAMS = "rf", "cnn"  # the families whose probabilities the insight text talks about


@dataclass
class Slot:
    """One family's registered model as the page sees it: loaded, or the reason it is not."""
    family: str                        # the family's short name; the page's id is "<family>-pred"
    name: str                          # the registered model
    alias: str
    model: Any = None                  # the unwrapped pyfunc (GenreCoverModel)
    version: str = ""
    message: str = ""                  # why it is not loaded and how to get one (markdown, for the status)
    hint: str = ""                     # the same in a few words, for its predictions box

    @property
    def title(self) -> str:
        return f"{self.name} v{self.version} (@{self.alias})" if self.model else f"{self.name}@{self.alias}"

    @property
    def predictor(self) -> Any:
        """The family's own object behind the pyfunc (None when not loaded)."""
        return getattr(self.model, "predictor", None)

    @property
    def output(self) -> str:
        return pred_id(self.family)


def pred_id(family: str) -> str:
    return f"{family}-pred"


def load_slot(name: str, alias: str) -> Slot:
    family = family_of_model(name)
    if family is None:
        raise UserError(f"{name} is not the model of any family (known: "
                        f"{', '.join(f.model_name for f in FAMILIES.values())})")
    try:
        model, version = registry.load_alias(name, alias)
        return Slot(family.name, name, alias, model, version)
    except registry.ModelNotFound as exc:
        return Slot(family.name, name, alias, message=missing_message(name, alias, str(exc)),
                    hint=f"not available: genreclf {family.entry_point} trains one")


def load_slots(alias: str) -> list[Slot]:
    """One slot per registered family, in registry order."""
    return [load_slot(family.model_name, alias) for family in FAMILIES.values()]


def missing_message(name: str, alias: str, why: str) -> str:
    family = family_of_model(name)
    entry = family.entry_point if family else "train_<family>"
    text = (f"**{name}@{alias} is not available**: {why}. Train one with "
            f"`mlflow run . -e {entry} --env-manager local` (or `genreclf {entry}`); it is registered as "
            f"@{registry.CHALLENGER}")
    if alias == registry.CHALLENGER:
        return text + "."
    return (text + f". Promote it with `mlflow run . -e promote -P model_name={name} --env-manager local`, "
            f"or start the demo with `-P alias={registry.CHALLENGER}`.")


@dataclass
class Gallery:
    """The test split of the data section, kept in memory (only these covers are shown)."""
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    keys: list[str] = field(default_factory=list)      # "<genre> · <sample id>", the dropdown choices
    truth: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    message: str = ""

    def keys_of(self, genre: str) -> list[str]:
        return [k for k, g in zip(self.keys, self.truth) if genre in (ALL, g)]


def load_gallery(cfg: DataConfig) -> Gallery:
    try:
        covers = load_covers(cfg)
    except UserError as exc:  # no data: uploads still work
        return Gallery(message=f"**No test covers**: {exc}")
    idx = covers.indices("test")
    truth = [covers.genres[k] for k in covers.labels[idx]]
    keys = [f"{g} · {i}" for g, i in zip(truth, covers.ids[idx])]
    return Gallery(np.ascontiguousarray(covers.images[idx]), keys, truth, list(covers.genres))


class Explorer:
    """Everything a page event computes; one lock, since Grad-CAM hooks are not thread-safe.

    ``outputs`` names what every cover event returns, in order: the cover, one prediction per slot,
    then the Grad-CAM, the feature figure and table, the insight, the page state and the note.
    """

    def __init__(self, slots: list[Slot], gallery: Gallery, size: int, max_upload_mb: float):
        self.slots, self.gallery = list(slots), gallery
        self.size, self.max_mb = size, max_upload_mb
        self.outputs = ("cover", *(s.output for s in self.slots), "gradcam", "figure", "table", "insight",
                        "state", "note")
        self.lock = threading.Lock()
        self.cache: dict[str, tuple] = {}  # gallery key -> outputs: a cover picked again costs nothing

    def loaded(self) -> list[Slot]:
        return [s for s in self.slots if s.model is not None]

    def slot(self, family: str) -> Slot | None:
        """The slot of ``family`` when its model is loaded."""
        return next((s for s in self.loaded() if s.family == family), None)

    def cam_slot(self) -> Slot | None:
        """The first loaded model that can explain itself with Grad-CAM (the CNN)."""
        return next((s for s in self.loaded() if hasattr(s.predictor, "explain")), None)

    def known(self) -> set[str]:
        """The genres the loaded models were trained on (empty when none is loaded)."""
        return {g for slot in self.loaded() for g in slot.model.genres}

    def unknown_genres(self) -> list[str]:
        known = self.known()
        return [g for g in self.gallery.genres if known and g not in known]

    def genres(self) -> list[str]:
        first = self.cam_slot() or next(iter(self.loaded()), None)
        return list(first.model.genres) if first else list(self.gallery.genres)

    def proba(self, slot: Slot, rgb: np.ndarray) -> dict[str, float]:
        frame = slot.model.predict(None, [rgb])  # the shared pyfunc path: same resizing as serving
        return {g: float(frame[f"p_{g}"].iloc[0]) for g in slot.model.genres}

    def gradcam(self, rgb: np.ndarray | None, genre: str | None):
        cam = self.cam_slot()
        if rgb is None or cam is None:
            return None
        overlay, genre = cam.predictor.explain(rgb, genre)
        return gr.Image(value=overlay, label=f"Grad-CAM: where the CNN sees {genre}")

    def features(self, rgb: np.ndarray) -> tuple[dict[str, float], TrainStats | None]:
        """The cover's 25 features and the training statistics (those only with the forest loaded)."""
        rf = self.slot(FEATURES)
        if rf is not None:
            return rf.predictor.features(rgb), TrainStats.of(rf.predictor)
        return dict(zip(cover25.FEATURE_NAMES, cover25.extract(rgb).tolist())), None

    def analyze(self, rgb: np.ndarray, truth: str | None) -> tuple:
        """All outputs for one cover, in the order of ``outputs``."""
        start = time.perf_counter()
        with self.lock:
            probas = {s.family: self.proba(s, rgb) for s in self.loaded()}
            cam = self.cam_slot()
            top = probas[cam.family] if cam else None
            out = {"gradcam": self.gradcam(rgb, max(top, key=lambda g: top[g]) if top else None)}  # its top genre
            values, stats = self.features(rgb)
        predicted = time.perf_counter()
        out.update(figure=feature_figure(values, stats, truth), table=feature_table(values, stats),
                   insight=self.insight(values, stats, probas, truth))
        log.info("cover analysed in %.2fs (models, features and Grad-CAM %.2fs; figure, table, text %.2fs)",
                 time.perf_counter() - start, predicted - start, time.perf_counter() - predicted)
        out.update({s.output: probas.get(s.family) or s.hint for s in self.slots})
        out.update(cover=rgb, state={"rgb": rgb, "truth": truth}, note="")
        return tuple(out[name] for name in self.outputs)

    def insight(self, values: dict[str, float], stats: TrainStats | None, probas: dict[str, dict[str, float]],
                truth: str | None) -> str:
        known = self.known()
        foreign = truth is not None and bool(known) and truth not in known
        text = insight_text(values, stats, probas.get(FEATURES), probas.get(CAMS), None if foreign else truth)
        if not foreign:
            return text
        # "neither model got it right" would be meaningless: they cannot answer this genre
        return (f"⚠️ **True genre**: {truth}, a genre the models were not trained on "
                f"({', '.join(sorted(known))}): they can only answer with one of those.\n\n"
                + text.replace("**True genre**: unknown (uploaded cover).", "").strip())

    def skip(self) -> tuple:
        return tuple(gr.skip() for _ in self.outputs)

    def pick(self, key: str | None):
        if not key or key not in self.gallery.keys:
            return self.skip()
        if key not in self.cache:
            i = self.gallery.keys.index(key)
            self.cache[key] = self.analyze(self.gallery.images[i], self.gallery.truth[i])
        return self.cache[key]

    def upload(self, path: str | None):
        """``outputs`` plus None, which empties the upload box so the next file can be dropped right away."""
        if not path:
            return self.skip() + (gr.skip(),)
        name = Path(path).name
        try:
            size = os.path.getsize(path)
            if size > self.max_mb * 2**20:
                raise BadImageError(f"{name}: {size / 2**20:.2g} MB is over the {self.max_mb:g} MB upload limit")
            rgb = decode_rgb(Path(path).read_bytes(), self.size, name=name)
        except (BadImageError, OSError) as exc:
            return self.skip()[:-1] + (f"⚠️ **Cannot use this upload**: {exc}", None)
        return self.analyze(rgb, None)[:-1] + (f"Uploaded **{name}** (true genre unknown).", None)

    def filter(self, genre: str):
        keys = self.gallery.keys_of(genre)[:GALLERY_MAX]
        items = [(self.gallery.images[self.gallery.keys.index(k)], k) for k in keys]
        return gr.Gallery(value=items), gr.Dropdown(choices=self.gallery.keys_of(genre), value=None)

    def gallery_select(self, genre: str, evt: gr.SelectData):
        keys = self.gallery.keys_of(genre)[:GALLERY_MAX]
        return keys[evt.index] if evt.index is not None and evt.index < len(keys) else gr.skip()

    def recam(self, state: dict | None, genre: str | None):
        with self.lock:
            return self.gradcam((state or {}).get("rgb"), genre) or gr.skip()
