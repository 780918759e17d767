"""The MLflow UI as a user sees it: a CNN run's page and a tuning parent's page, in headless Chromium.

A real ``mlflow server`` on 127.0.0.1 (free port) serves a store filled by the real entry points; the
test checks what the pages show and leaves screenshots in ``test-output/`` for a person to look at.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from genreclf import config as C
from genreclf.entrypoints import train_cnn, tune

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_store() -> dict:
    data = {"data": "synthetic:12", "cache_size": "64", "experiment": "ui"}
    cnn = C.Resolved("train_cnn", C.resolve(None, {**data, "pretrained": "false", "epochs": "3", "image_size": "32",
                                                   "max_steps_per_epoch": "1",
                                                   "gradcam_per_genre": "1", "patience": "0"}, "data", "cnn"))
    rf = C.Resolved("tune_rf", C.resolve(None, {**data, "n_trials": "4", "n_jobs": "1", "n_estimators": "50"},
                                         "data", "rf", "tune"))
    return {"cnn": train_cnn.main(cnn), "tune": tune.run_tuning("rf", rf)}


def start_server(db: Path, port: int) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(db.parent / "mlflow-server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):  # bounded: at most ~5 min for the server to answer (slow only on a loaded machine)
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise AssertionError("mlflow server did not answer /health within 5 min: "
                         + (db.parent / "mlflow-server.log").read_text()[-2000:])


def test_run_page_and_tuning_parent_in_the_mlflow_ui(workdir):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    from playwright.sync_api import expect, sync_playwright
    out = fill_store()
    client = mlflow.MlflowClient()
    cnn_run = client.get_run(out["cnn"]["run_id"])
    parent = client.get_run(out["tune"]["parent_run_id"])
    eid = cnn_run.info.experiment_id
    port = free_port()
    server = start_server(workdir / "mlflow.db", port)
    base = f"http://127.0.0.1:{port}/#/experiments/{eid}/runs"
    OUT.mkdir(exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(f"http://127.0.0.1:{port}")
                       else r.abort())  # nothing leaves the machine

            page.goto(f"{base}/{cnn_run.info.run_id}/model-metrics")
            expect(page.get_by_text(cnn_run.info.run_name).first).to_be_visible(timeout=TIMEOUT_MS)
            # MLflow sections charts by the prefix before '/': the diagnostics get small sections of their
            # own and "Model metrics" holds only the unprefixed headline metrics (val_*, test_*, losses)
            headline = [k for k in cnn_run.data.metrics if "/" not in k]
            grouped = {k.split("/")[0] for k in cnn_run.data.metrics if "/" in k and not k.startswith("system/")}
            assert grouped == {"data", "train"} and "data_covers" not in cnn_run.data.metrics
            expect(page.get_by_text("Model metrics").first).to_be_visible(timeout=TIMEOUT_MS)
            page.wait_for_timeout(2000)
            sections = page.locator("main").aria_snapshot()  # section titles read "<name> (<charts>)"
            assert f"Model metrics ({len(headline)})" in sections, sections[:3000]
            for group in grouped:
                n = sum(k.startswith(group + "/") for k in cnn_run.data.metrics)
                assert f"{group} ({n})" in sections, group
            page.wait_for_timeout(3000)  # charts draw after the data arrives
            page.screenshot(path=str(OUT / "mlflow_ui_cnn_run_metrics.png"), full_page=True)
            page.goto(f"{base}/{cnn_run.info.run_id}")  # the Overview tab: params and metrics tables
            expect(page.get_by_text("val_macro_f1").first).to_be_visible(timeout=TIMEOUT_MS)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(OUT / "mlflow_ui_cnn_run_overview.png"), full_page=True)
            assert "cnnconfig.seed" not in page.inner_text("body")  # one seed param, not one per section

            page.goto(f"{base}/{parent.info.run_id}")
            expect(page.get_by_text(parent.info.run_name).first).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_text("best_value").first).to_be_visible(timeout=TIMEOUT_MS)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(OUT / "mlflow_ui_tuning_parent.png"), full_page=True)
            text = page.inner_text("body")
            best = client.get_run(parent.info.run_id).data.params
            for name in out["tune"]["best_params"]:  # the best configuration, as params
                assert name in text and name in best, name
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
