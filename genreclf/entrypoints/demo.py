"""The interactive demo: pick a test cover (or upload one) and see how both models read it.

For the chosen cover, side by side: the cover; the 25 CV features next to the per-genre averages of
the training data; both models' genre probabilities; the CNN's Grad-CAM for its top genre and for a
genre the user picks; and a short insight derived from those numbers. Models come from the registry
by alias; a missing model is a message on the page, not a crash. Everything renders offline: no
analytics, no share link, fonts served by Gradio itself.
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
import pandas as pd  # noqa: E402

from genreclf import BOOST_MODEL_NAME, CNN_MODEL_NAME, RF_MODEL_NAME
from genreclf.config import DataConfig, Resolved, ServeConfig  # noqa: E402
from genreclf.data.covers import load_covers  # noqa: E402
from genreclf.data.images import BadImageError, decode_rgb  # noqa: E402
from genreclf.errors import UserError  # noqa: E402
from genreclf.rf import features
from genreclf.rf.insight import TrainStats, feature_figure, feature_table, insight_text  # noqa: E402
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking  # noqa: E402

log = logging.getLogger(__name__)
ALL = "All genres"
GALLERY_MAX = 48  # thumbnails per filter; the dropdown lists every test cover
TRAIN = {RF_MODEL_NAME: "train_rf", CNN_MODEL_NAME: "train_cnn", BOOST_MODEL_NAME: "train_boost"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# what every cover event returns, in this order (the components are wired in build_app)
OUTPUTS = ("cover", "rf", "cnn", "boost", "gradcam", "figure", "table", "insight", "state", "note")
# covers are small (cache_size); let the browser scale them up to the frame instead of a thumbnail
CSS = "#cover img, #gradcam-top img, #gradcam-pick img {width: 100%; height: 100%; object-fit: contain}"


@dataclass
class Slot:
    """One registered model as the page sees it: loaded, or the reason it is not."""
    name: str
    alias: str
    model: Any = None                  # the unwrapped pyfunc (RFCoverModel / CNNCoverModel)
    version: str = ""
    message: str = ""

    @property
    def title(self) -> str:
        return f"{self.name} v{self.version} (@{self.alias})" if self.model else f"{self.name}@{self.alias}"


def load_slot(name: str, alias: str) -> Slot:
    try:
        model, version = registry.load_alias(name, alias)
        return Slot(name, alias, model, version)
    except registry.ModelNotFound as exc:
        return Slot(name, alias, message=missing_message(name, alias, str(exc)))


def missing_message(name: str, alias: str, why: str) -> str:
    entry = TRAIN[name]
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
    """Everything a page event computes; one lock, since Grad-CAM hooks are not thread-safe."""

    def __init__(self, rf: Slot, cnn: Slot, gallery: Gallery, size: int, max_upload_mb: float,
                 boost: Slot | None = None):
        self.rf, self.cnn, self.gallery = rf, cnn, gallery
        self.boost = boost or Slot(BOOST_MODEL_NAME, "", message=f"{BOOST_MODEL_NAME} is not loaded")
        self.size, self.max_mb = size, max_upload_mb
        self.lock = threading.Lock()
        self.cache: dict[str, tuple] = {}  # gallery key -> outputs: a cover picked again costs nothing

    def known(self) -> set[str]:
        """The genres the loaded models were trained on (empty when none is loaded)."""
        return {g for slot in (self.rf, self.cnn, self.boost) if slot.model is not None for g in slot.model.genres}

    def unknown_genres(self) -> list[str]:
        known = self.known()
        return [g for g in self.gallery.genres if known and g not in known]

    def genres(self) -> list[str]:
        for slot in (self.cnn, self.rf, self.boost):
            if slot.model is not None:
                return list(slot.model.genres)
        return list(self.gallery.genres)

    def proba(self, slot: Slot, rgb: np.ndarray) -> dict[str, float] | None:
        if slot.model is None:
            return None
        frame = slot.model.predict(None, [rgb])  # the shared pyfunc path: same resizing as serving
        return {g: float(frame[f"p_{g}"].iloc[0]) for g in slot.model.genres}

    def gradcam(self, rgb: np.ndarray | None, genre: str | None):
        if rgb is None or self.cnn.model is None:
            return None
        overlay, genre = self.cnn.model.explain(rgb, genre)
        return gr.Image(value=overlay, label=f"Grad-CAM: where the CNN sees {genre}")

    def analyze(self, rgb: np.ndarray, truth: str | None):
        """All outputs for one cover, in the order of ``OUTPUTS``."""
        start = time.perf_counter()
        with self.lock:
            rf_p, cnn_p = self.proba(self.rf, rgb), self.proba(self.cnn, rgb)
            boost_p = self.proba(self.boost, rgb)
            cam = self.gradcam(rgb, max(cnn_p, key=lambda g: cnn_p[g]) if cnn_p else None)  # its top genre
            rf = self.rf.model
            values = (rf.features(rgb) if rf is not None
                      else dict(zip(features.FEATURE_NAMES, features.extract(rgb))))
        predicted = time.perf_counter()
        stats = TrainStats.of(rf)
        table = feature_table(values, stats)
        figure = feature_figure(values, stats, truth)
        foreign = truth is not None and bool(self.known()) and truth not in self.known()
        text = insight_text(values, stats, rf_p, cnn_p, None if foreign else truth)
        if foreign:  # "neither model got it right" would be meaningless: they cannot answer this genre
            text = (f"⚠️ **True genre**: {truth}, a genre the models were not trained on "
                    f"({', '.join(sorted(self.known()))}): they can only answer with one of those.\n\n"
                    + text.replace("**True genre**: unknown (uploaded cover).", "").strip())
        log.info("cover analysed in %.2fs (models, features and Grad-CAM %.2fs; figure, table, text %.2fs)",
                 time.perf_counter() - start, predicted - start, time.perf_counter() - predicted)
        return (rgb, rf_p or self.rf.message, cnn_p or self.cnn.message, boost_p or self.boost.message,
                cam, figure, table, text,
                {"rgb": rgb, "truth": truth}, "")

    def pick(self, key: str | None):
        if not key or key not in self.gallery.keys:
            return tuple(gr.skip() for _ in OUTPUTS)
        if key not in self.cache:
            i = self.gallery.keys.index(key)
            self.cache[key] = self.analyze(self.gallery.images[i], self.gallery.truth[i])
        return self.cache[key]

    def upload(self, path: str | None):
        """``OUTPUTS`` plus None, which empties the upload box so the next file can be dropped right away."""
        if not path:
            return tuple(gr.skip() for _ in OUTPUTS) + (gr.skip(),)
        name = Path(path).name
        try:
            size = os.path.getsize(path)
            if size > self.max_mb * 2**20:
                raise BadImageError(f"{name}: {size / 2**20:.2g} MB is over the {self.max_mb:g} MB upload limit")
            rgb = decode_rgb(Path(path).read_bytes(), self.size, name=name)
        except (BadImageError, OSError) as exc:
            return (*(gr.skip() for _ in OUTPUTS[:-1]), f"⚠️ **Cannot use this upload**: {exc}", None)
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


def status_text(ex: Explorer, data: DataConfig) -> str:
    lines = ["# Album cover → genre: explore the models",
             f"Models: **{ex.rf.title}** (Random Forest on 25 CV features) and **{ex.cnn.title}** (CNN). "
             f"Covers: test split of `{data.data}` ({len(ex.gallery.keys)} covers)."]
    lines.append(f"Strongest offline model: **{ex.boost.title}** (two forests + SVM on richer descriptors).")
    lines += [s.message for s in (ex.rf, ex.cnn, ex.boost) if s.message]
    if ex.unknown_genres():
        lines.append(f"⚠️ **These covers include genres the models do not know**: "
                     f"{', '.join(ex.unknown_genres())} (the models were trained on {', '.join(sorted(ex.known()))}). "
                     "For those covers the models cannot be right; start the demo with the `data` and `genres` "
                     "the models were trained on.")
    if ex.gallery.message:
        lines.append(ex.gallery.message)
    return "\n\n".join(lines)


def build_app(data: DataConfig, serve: ServeConfig) -> gr.Blocks:
    """The page, with models and covers loaded; launch it with :func:`launch`."""
    tracking.configure(data.experiment)  # the store MLFLOW_TRACKING_URI or ./mlflow.db names
    ex = Explorer(load_slot(RF_MODEL_NAME, serve.alias), load_slot(CNN_MODEL_NAME, serve.alias),
                  load_gallery(data), data.cache_size, serve.max_upload_mb,
                  boost=load_slot(BOOST_MODEL_NAME, serve.alias))
    genres = ex.genres()
    with gr.Blocks(title="genreclf demo", analytics_enabled=False) as app:
        gr.Markdown(status_text(ex, data), elem_id="status")
        state = gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 1 · Choose a cover")
                pick_genre = gr.Dropdown([ALL] + ex.gallery.genres, value=ALL, label="Filter by genre",
                                         elem_id="genre-filter")
                keys = ex.gallery.keys_of(ALL)
                gallery = gr.Gallery([(ex.gallery.images[i], k) for i, k in enumerate(keys[:GALLERY_MAX])],
                                     label="Test covers", columns=3, height=260, allow_preview=False,
                                     elem_id="gallery")
                cover_key = gr.Dropdown(keys, value=None, label="Test cover", elem_id="cover-select")
                upload = gr.File(label=f"…or upload your own (image, ≤ {serve.max_upload_mb:g} MB)",
                                 file_count="single", type="filepath", elem_id="upload", height=120)
                upload_msg = gr.Markdown("", elem_id="upload-message")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 2 · The cover")
                cover = gr.Image(label="Cover", interactive=False, height=260, elem_id="cover")
                insight = gr.Markdown("Pick a cover to see what the models make of it.", elem_id="insight")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 3 · Predictions")
                rf_label = gr.Label(label="Random Forest (CV features)", num_top_classes=len(genres) or None,
                                    elem_id="rf-pred")
                cnn_label = gr.Label(label="CNN", num_top_classes=len(genres) or None, elem_id="cnn-pred")
                boost_label = gr.Label(label="Boost (2 forests + SVM)", num_top_classes=len(genres) or None,
                                       elem_id="boost-pred")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 4 · Grad-CAM")
                cam_top = gr.Image(label="Grad-CAM: CNN's top genre", interactive=False, height=260,
                                   elem_id="gradcam-top")
                cam_genre = gr.Dropdown(genres, value=None, label="Grad-CAM for genre", elem_id="gradcam-genre")
                cam_pick = gr.Image(label="Grad-CAM for the chosen genre", interactive=False, height=260,
                                    elem_id="gradcam-pick")
        gr.Markdown("### 5 · The 25 CV features against the per-genre averages of the training data")
        # one under the other, each the page's full width: side by side, the table was cut off on the right
        figure = gr.Image(label="Features (z-scores)", interactive=False, elem_id="feature-plot", show_label=False)
        table = gr.Dataframe(pd.DataFrame(columns=["kind", "feature", "cover"] + ex.gallery.genres),
                             label="The cover's features and the per-genre training averages",
                             interactive=False, elem_id="feature-table", max_height=1100, wrap=True)
        with gr.Accordion("What the 25 features measure", open=False):
            gr.Markdown("\n".join(f"- **{n}** ({features.GROUP_OF[n]}): {features.FEATURE_DOCS[n]}"
                                  for n in features.FEATURE_NAMES))
        outputs = [cover, rf_label, cnn_label, boost_label, cam_top, figure, table, insight, state, upload_msg]
        cover_key.change(ex.pick, cover_key, outputs)
        upload.upload(ex.upload, upload, outputs + [upload])
        pick_genre.change(ex.filter, pick_genre, [gallery, cover_key])
        gallery.select(ex.gallery_select, pick_genre, cover_key)
        cam_genre.change(ex.recam, [state, cam_genre], cam_pick)
    return app


def launch(app: gr.Blocks, serve: ServeConfig, *, block: bool = True) -> str:
    """Serve the page on ``serve.host:serve.port``; returns its local URL (when not blocking)."""
    try:
        _, url, _ = app.launch(server_name=serve.host, server_port=serve.port, share=False,
                               prevent_thread_lock=not block, max_file_size=int(serve.max_upload_mb * 2**20),
                               ssr_mode=False, show_error=False, quiet=True, inbrowser=False, css=CSS)
    except OSError as exc:
        raise UserError(f"cannot serve the demo on {serve.host}:{serve.port} ({exc}); pass another port "
                        f"(-P port=7861 with mlflow run, --port 7861 with genreclf demo)") from None
    return url


def main(resolved: Resolved) -> dict:
    data, serve = resolved.data, resolved.serve
    if serve.host not in LOOPBACK:
        log.warning("serving on %s: the demo is reachable from other machines", serve.host)
    app = build_app(data, serve)
    log.info("serving the demo on http://%s:%d (Ctrl+C to stop)", serve.host, serve.port)
    launch(app, serve, block=True)
    return {"host": serve.host, "port": serve.port}
