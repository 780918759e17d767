"""Issue 15: `genreclf score` - 2,000 tiny covers, the job SIGKILLed halfway and started again: every
cover scored exactly once, finished parts not rewritten, bad files skipped and counted, one MLflow run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import MLFLOW_RUN_ENV, isolated_store
from PIL import Image

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.serving.batch import read_predictions

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
GENRES = ["HipHop", "Rock", "Pop", "Electronic"]
N, CHUNK = 2000, 100
MODEL = f"models:/{RF_MODEL_NAME}@champion"


def tiny(genre: str, i: int) -> np.ndarray:
    """A 32 px synthetic cover (rendered at 48 px, the smallest size the renderer draws, then shrunk)."""
    return np.asarray(Image.fromarray(make_cover(genre, i, seed=7, size=48)).resize((32, 32)))


@pytest.fixture(scope="module")
def champion(tmp_path_factory, session_store):
    """A store with a small RF registered as @champion, and a folder of 2,000 synthetic 32 px covers
    (per genre sub-folders) plus two broken images and a file that is no image."""
    from genreclf.rf import forest
    from genreclf.tracking import runs as tracking
    root = tmp_path_factory.mktemp("score")
    with isolated_store(root, session_store / "cache") as env:
        rf = forest.train_main(C.Resolved("train_rf", C.resolve(
            None, {"data": "synthetic:12", "cache_size": 64, "n_estimators": 20, "n_jobs": 1}, "data", "rf")))
        tracking.set_alias(RF_MODEL_NAME, "champion", rf["model_version"])
    covers = root / "covers"
    for i in range(N):
        genre = GENRES[i % 4]
        (covers / genre).mkdir(parents=True, exist_ok=True)
        (covers / genre / f"{i:05d}.png").write_bytes(encode(tiny(genre, i), "PNG"))
    (covers / "Rock" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (covers / "Pop" / "empty.png").write_bytes(b"")
    (covers / "README.txt").write_text("not a cover")
    clean = {k: v for k, v in os.environ.items() if k not in MLFLOW_RUN_ENV}
    return {"root": root, "covers": covers, "env": {**clean, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}}


def score_cmd(covers: Path, out: Path) -> list[str]:
    return [str(BIN / "genreclf"), "score", "--model", MODEL, "--input", str(covers), "--output", str(out),
            "--chunk_size", str(CHUNK), "--experiment", "scoring"]


def done_chunks(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["done"]
    except (OSError, ValueError):
        return {}


def test_score_killed_halfway_resumes_and_scores_every_cover_once(champion):
    out, n_chunks = champion["root"] / "predictions", -(-(N + 2) // CHUNK)
    cmd, env = score_cmd(champion["covers"], out), champion["env"]
    proc = subprocess.Popen(cmd, cwd=champion["root"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(done_chunks(out)) < n_chunks // 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = done_chunks(out)
    assert 0 < len(before) < n_chunks, f"not killed halfway ({len(before)} of {n_chunks} chunks done)"
    stamps = {k: (out / f"part-{int(k):05d}.parquet").stat().st_mtime_ns for k in before}

    res = subprocess.run(cmd, cwd=champion["root"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{len(before) * CHUNK}/{N + 2}" in res.stderr  # the progress bar starts where the kill left it
    assert {k: (out / f"part-{int(k):05d}.parquet").stat().st_mtime_ns for k in before} == stamps  # not re-scored

    preds = read_predictions(out)
    expected = {f"{g}/{i:05d}.png" for i in range(N) for g in [GENRES[i % 4]]}
    assert len(preds) == N and set(preds["id"]) == expected  # every cover exactly once
    assert list(preds.columns) == ["id", "genre", *[f"p_{g}" for g in sorted(GENRES)]] or \
        set(preds.columns) == {"id", "genre", *[f"p_{g}" for g in GENRES]}
    assert preds.filter(like="p_").sum(axis=1).round(6).eq(1).all()
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = sorted(s[0] for info in manifest["done"].values() for s in info["skipped"])
    assert skipped == ["Pop/empty.png", "Rock/broken.jpg"] and len(manifest["done"]) == n_chunks

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["scoring"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the restart continued the killed run
    m = runs[0].data.metrics
    assert m["n_scored"] == N and m["n_skipped"] == 2 and m["n_ignored_files"] == 1
    assert sum(v for k, v in m.items() if k.startswith("count_")) == N
    assert preds["genre"].value_counts().to_dict() == {k[6:]: v for k, v in m.items() if k.startswith("count_")}
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "score")} == {
        "score/summary.json", "score/skipped.csv"}

    sample = preds.sample(40, random_state=0)  # the same answers as the model called directly
    model = mlflow.pyfunc.load_model(MODEL)
    direct = model.predict(pd.DataFrame({"image": [(champion["covers"] / i).read_bytes() for i in sample["id"]]}))
    assert list(direct["genre"]) == list(sample["genre"])


def test_score_refuses_another_job_in_the_same_output(champion, tmp_path):
    """An output folder of one job is not silently mixed with another input's predictions."""
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (other / "x" / "a.png").write_bytes(encode(tiny("Rock", 1), "PNG"))
    out = champion["root"] / "predictions"
    res = subprocess.run(score_cmd(other, out), cwd=champion["root"], env=champion["env"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and "holds predictions of another scoring job" in res.stderr
    assert "Traceback" not in res.stderr
