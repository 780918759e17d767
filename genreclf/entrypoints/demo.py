"""The interactive demo: pick a test cover (or upload one) and see how the registered models read it.

For the chosen cover, side by side: the cover; the 25 CV features next to the per-genre averages of
the training data; every model family's genre probabilities; the CNN's Grad-CAM for its top genre
and for a genre the user picks; and a short insight derived from those numbers. Models come from
the registry by alias, one per family of ``FAMILIES``; a missing model is a message on the page, not
a crash. Everything renders offline: no analytics, no share link, fonts served by Gradio itself.
What each event computes lives in :mod:`genreclf.entrypoints.demo_explorer`; this module lays out
the page and serves it.
"""
from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from genreclf.config import DataConfig, Resolved, ServeConfig  # noqa: E402
from genreclf.entrypoints.demo_explorer import ALL, GALLERY_MAX, Explorer, load_gallery, load_slots  # noqa: E402
from genreclf.entrypoints.promote import recorded_data  # noqa: E402
from genreclf.errors import UserError  # noqa: E402
from genreclf.features import cover25  # noqa: E402
from genreclf.models import FAMILIES  # noqa: E402
from genreclf.tracking import registry, runs  # noqa: E402

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# covers are small (cache_size); let the browser scale them up to the frame instead of a thumbnail
CSS = "#cover img, #gradcam-top img, #gradcam-pick img {width: 100%; height: 100%; object-fit: contain}"


def status_text(ex: Explorer, data: DataConfig) -> str:
    lines = ["# Album cover → genre: explore the models",
             f"Models: {', '.join(f'**{s.title}**' for s in ex.slots) or 'none registered'}. "
             f"Covers: test split of `{data.data}` ({len(ex.gallery.keys)} covers)."]
    lines += [s.message for s in ex.slots if s.message]
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
    runs.configure(data.experiment)  # the store MLFLOW_TRACKING_URI or ./mlflow.db names
    ex = Explorer(load_slots(serve.alias), load_gallery(data), data.cache_size, serve.max_upload_mb)
    with gr.Blocks(title="genreclf demo", analytics_enabled=False) as app:
        gr.Markdown(status_text(ex, data), elem_id="status")
        parts = {"state": gr.State(None)}
        with gr.Row(equal_height=False):
            pickers = _cover_column(ex, serve, parts)
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 2 · The cover")
                parts["cover"] = gr.Image(label="Cover", interactive=False, height=260, elem_id="cover")
                parts["insight"] = gr.Markdown("Pick a cover to see what the models make of it.", elem_id="insight")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### 3 · Predictions")
                top = len(ex.genres()) or None
                for slot in ex.slots:
                    parts[slot.output] = gr.Label(label=slot.title, num_top_classes=top, elem_id=slot.output)
            cam_genre = _gradcam_column(ex, parts)
        _feature_section(ex, parts)
        outputs = [parts[name] for name in ex.outputs]
        pick_genre, gallery, cover_key, upload = pickers
        cover_key.change(ex.pick, cover_key, outputs)
        upload.upload(ex.upload, upload, outputs + [upload])
        pick_genre.change(ex.filter, pick_genre, [gallery, cover_key])
        gallery.select(ex.gallery_select, pick_genre, cover_key)
        cam_genre.change(ex.recam, [parts["state"], cam_genre], parts["gradcam-pick"])
    return app


def _cover_column(ex: Explorer, serve: ServeConfig, parts: dict) -> tuple:
    """Column 1: the genre filter, the gallery, the cover dropdown and the upload box."""
    with gr.Column(scale=1, min_width=260):
        gr.Markdown("### 1 · Choose a cover")
        pick_genre = gr.Dropdown([ALL] + ex.gallery.genres, value=ALL, label="Filter by genre",
                                 elem_id="genre-filter")
        keys = ex.gallery.keys_of(ALL)
        gallery = gr.Gallery([(ex.gallery.images[i], k) for i, k in enumerate(keys[:GALLERY_MAX])],
                             label="Test covers", columns=3, height=260, allow_preview=False, elem_id="gallery")
        cover_key = gr.Dropdown(keys, value=None, label="Test cover", elem_id="cover-select")
        upload = gr.File(label=f"…or upload your own (image, ≤ {serve.max_upload_mb:g} MB)",
                         file_count="single", type="filepath", elem_id="upload", height=120)
        parts["note"] = gr.Markdown("", elem_id="upload-message")
    return pick_genre, gallery, cover_key, upload


def _gradcam_column(ex: Explorer, parts: dict) -> gr.Dropdown:
    """Column 4: the CNN's Grad-CAM for its top genre and for a genre the user picks."""
    with gr.Column(scale=1, min_width=260):
        gr.Markdown("### 4 · Grad-CAM")
        parts["gradcam"] = gr.Image(label="Grad-CAM: CNN's top genre", interactive=False, height=260,
                                    elem_id="gradcam-top")
        cam_genre = gr.Dropdown(ex.genres(), value=None, label="Grad-CAM for genre", elem_id="gradcam-genre")
        parts["gradcam-pick"] = gr.Image(label="Grad-CAM for the chosen genre", interactive=False, height=260,
                                         elem_id="gradcam-pick")
    return cam_genre


def _feature_section(ex: Explorer, parts: dict) -> None:
    """Section 5: the cover's features against the training averages, as a figure and a table."""
    gr.Markdown("### 5 · The 25 CV features against the per-genre averages of the training data")
    # one under the other, each the page's full width: side by side, the table would be cut off on the right
    parts["figure"] = gr.Image(label="Features (z-scores)", interactive=False, elem_id="feature-plot",
                               show_label=False)
    parts["table"] = gr.Dataframe(pd.DataFrame(columns=["kind", "feature", "cover"] + ex.gallery.genres),
                                  label="The cover's features and the per-genre training averages",
                                  interactive=False, elem_id="feature-table", max_height=1100, wrap=True)
    with gr.Accordion("What the 25 features measure", open=False):
        gr.Markdown("\n".join(f"- **{n}** ({cover25.GROUP_OF[n]}): {cover25.FEATURE_DOCS[n]}"
                              for n in cover25.FEATURE_NAMES))


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


def champions_data(data: DataConfig, alias: str) -> DataConfig:
    """Without a ``data`` parameter, the gallery shows the test split of the data the shown versions
    were trained on (as ``promote`` scores them), not the default Hugging Face set (offline: retries,
    then an empty page)."""
    runs.configure(data.experiment)
    registered = set(registry.registered_model_names())
    try:
        return recorded_data([f.model_name for f in FAMILIES.values() if f.model_name in registered], data, alias)
    except UserError as exc:  # families trained on different data: the gallery keeps the given data
        log.warning("the gallery shows data=%s: %s", data.data, exc)
        return data


def main(resolved: Resolved) -> dict:
    data, serve = resolved.data, resolved.serve
    if serve.host not in LOOPBACK:
        log.warning("serving on %s: the demo is reachable from other machines", serve.host)
    app = build_app(champions_data(data, serve.alias), serve)
    log.info("serving the demo on http://%s:%d (Ctrl+C to stop)", serve.host, serve.port)
    launch(app, serve, block=True)
    return {"host": serve.host, "port": serve.port}
