"""The demo page: tiny real models from the registry, served on loopback, driven in headless Chromium.

The browser test trains the forest and the CNN on a few synthetic covers, gives them the ``champion`` alias,
starts the Gradio app on a free 127.0.0.1 port and uses it like a person: upload a cover, pick test
covers from the dropdown and from the genre-filtered gallery, ask for a Grad-CAM of another genre,
upload a file that is not an image. Every request leaving 127.0.0.1 is blocked and recorded: the page
must render and work offline. The full-page screenshot goes to test-output/demo.png (and to
docs/demo.png, the README's picture, when GENRECLF_UPDATE_DOCS=1).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import OUTPUT, ROOT, free_port

from genreclf import CNN_MODEL_NAME, RF_MODEL_NAME
from genreclf.config import CNNConfig, DataConfig, Resolved, RFConfig, ServeConfig
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.entrypoints import demo
from genreclf.models import FAMILIES
from genreclf.tracking import registry
from genreclf.tracking import runs as tracking

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DATA = DataConfig(data="synthetic:12", cache_size=64)
TIMEOUT_MS = 60_000


def train_champions(data: DataConfig) -> dict[str, str]:
    """Train tiny real models through their entry points; point @champion at the new versions."""
    from genreclf.entrypoints import train, train_cnn
    train.main(Resolved("train_rf", {"data": data, "rf": RFConfig(n_estimators=30, n_jobs=1)}))
    train_cnn.main(Resolved("train_cnn", {"data": data, "cnn": CNNConfig(
        pretrained=False, epochs=1, image_size=64, batch_size=16, device="cpu", workers=0, patience=0,
        warmup_epochs=0, tta=False, gradcam_per_genre=1)}))
    versions = {name: registry.registered_aliases(name)["challenger"] for name in (RF_MODEL_NAME, CNN_MODEL_NAME)}
    for name, version in versions.items():
        registry.set_alias(name, "champion", version)
    return versions


def test_missing_models_are_a_message_and_the_rest_still_works(workdir):
    tracking.configure(DATA.experiment)
    tracking.client().create_registered_model(CNN_MODEL_NAME)  # registered, but no version has the alias
    ex = demo.Explorer(demo.load_slots("champion"), demo.load_gallery(DATA), DATA.cache_size, max_upload_mb=0.01)
    slots = {s.family: s for s in ex.slots}
    assert list(slots) == list(FAMILIES)  # one slot per registered family, none loaded
    rf, cnn = slots["rf"], slots["cnn"]
    assert rf.model is None and "no model named 'album-genre-rf' is registered yet" in rf.message
    assert cnn.model is None and "has no version with alias @champion (aliases: none)" in cnn.message
    for family in FAMILIES.values():
        assert f"`mlflow run . -e {family.entry_point} --env-manager local`" in slots[family.name].message

    out = dict(zip(ex.outputs, ex.pick(ex.gallery.keys[0])))
    assert out["cover"].shape == (64, 64, 3) and out["gradcam"] is None
    assert out["rf-pred"] == "not available: genreclf train_rf trains one"
    assert all(out[f"{name}-pred"] == slot.hint for name, slot in slots.items())
    table = out["table"]  # the features are still computed, only the training averages are missing
    assert len(table) == 25 and table["cover"].ne("–").all() and list(table.columns) == ["kind", "feature", "cover"]
    assert out["figure"].ndim == 3 and "No model is available" in out["insight"]

    big, text = workdir / "big.png", workdir / "notes.txt"
    big.write_bytes(encode(make_cover("Rock", 0, size=300), "PNG"))
    text.write_text("not an image")
    assert "over the 0.01 MB upload limit" in dict(zip(ex.outputs, ex.upload(str(big))))["note"]
    assert "notes.txt: not a decodable image" in dict(zip(ex.outputs, ex.upload(str(text))))["note"]

    app = demo.build_app(DATA, ServeConfig())
    status = next(b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "status")
    assert "-e train_rf" in status and "-e train_cnn" in status and "-e train_ensemble" in status
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {f"{name}-pred" for name in FAMILIES} <= ids
    app.close()


@pytest.mark.browser
@pytest.mark.slow
def test_demo_in_headless_chromium(workdir):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; `make browser` installs it)")
    from playwright.sync_api import expect, sync_playwright
    versions = train_champions(DATA)
    keys = demo.load_gallery(DATA).keys
    serve = ServeConfig(port=free_port(), max_upload_mb=2)
    app = demo.build_app(DATA, serve)
    url = demo.launch(app, serve, block=False)
    assert url.startswith("http://127.0.0.1:")
    outside: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})

            def offline(route):
                if route.request.url.startswith(url.rstrip("/")):
                    return route.continue_()
                outside.append(route.request.url)
                return route.abort()
            page.route("**/*", offline)

            def choose(elem_id: str, option: str) -> None:
                page.locator(f"#{elem_id} input").click()
                page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()

            page.goto(url)
            for name, version in versions.items():
                expect(page.locator("#status")).to_contain_text(f"{name} v{version} (@champion)")

            # an uploaded cover: predictions, but no true genre
            upload = page.locator("#upload input[type=file]")
            upload.set_input_files(files=[{"name": "my-cover.png", "mimeType": "image/png",
                                           "buffer": encode(make_cover("Pop", 999, size=200), "PNG")}])
            expect(page.locator("#upload-message")).to_contain_text("Uploaded my-cover.png", timeout=TIMEOUT_MS)
            expect(page.locator("#insight")).to_contain_text("True genre: unknown")

            # a test cover from the dropdown: the trained models' probabilities for every genre, Grad-CAM, insight
            choose("cover-select", keys[0])
            truth = keys[0].split(" · ")[0]
            expect(page.locator("#insight")).to_contain_text(f"True genre: {truth}", timeout=TIMEOUT_MS)
            for elem in ("#rf-pred", "#cnn-pred"):
                for genre in DATA.genres.split(","):
                    expect(page.locator(elem)).to_contain_text(genre)
                expect(page.locator(elem)).to_contain_text("%")
            expect(page.locator("#ensemble-pred")).to_contain_text("train_ensemble")  # not trained: the message
            cam = page.locator("#gradcam-top img")
            expect(cam).to_be_visible(timeout=TIMEOUT_MS)
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=cam.element_handle())
            expect(page.locator("#gradcam-top")).to_contain_text("where the CNN sees")
            expect(page.locator("#feature-table")).to_contain_text("edge_density")
            expect(page.locator("#feature-plot img")).to_be_visible()

            # the genre filter narrows the gallery; clicking a thumbnail picks that cover
            choose("genre-filter", "Rock")
            for other in ("HipHop", "Pop", "Electronic"):
                expect(page.locator("#gallery")).not_to_contain_text(f"{other} ·")
            expect(page.locator("#gallery")).to_contain_text("Rock ·")
            page.locator("#gallery .thumbnail-item").first.click()
            expect(page.locator("#insight")).to_contain_text("True genre: Rock", timeout=TIMEOUT_MS)
            expect(page.locator("#cover-select input")).to_have_value(
                next(k for k in keys if k.startswith("Rock")))

            # Grad-CAM for a genre the user picks
            choose("gradcam-genre", "Electronic")
            expect(page.locator("#gradcam-pick")).to_contain_text("where the CNN sees Electronic",
                                                                 timeout=TIMEOUT_MS)
            expect(page.locator("#gradcam-pick img")).to_be_visible()

            # not an image: a message on the page, the results stay
            upload.set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain",
                                           "buffer": b"these are not the pixels you are looking for"}])
            expect(page.locator("#upload-message")).to_contain_text("Cannot use this upload", timeout=TIMEOUT_MS)
            expect(page.locator("#upload-message")).to_contain_text("notes.txt: not a decodable image")
            expect(page.locator("#insight")).to_contain_text("True genre: Rock")
            assert "Traceback" not in page.content()

            shot = OUTPUT / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        app.close()
    assert shot.stat().st_size > 50_000
    (ROOT / "docs").mkdir(exist_ok=True)
    if os.environ.get("GENRECLF_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "demo.png")
    assert not outside, f"the page asked for outside hosts: {outside}"
