"""`genreclf score`: 2,000 tiny covers, the job SIGKILLed halfway and started again: every
cover scored exactly once, finished parts not rewritten, bad files skipped and counted, one MLflow run."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import script
from PIL import Image

from genreclf import cli
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.serving.batch import read_predictions

pytestmark = pytest.mark.slow
GENRES = ["HipHop", "Rock", "Pop", "Electronic"]
N, CHUNK = 2000, 100


def tiny(genre: str, i: int) -> np.ndarray:
    """A 32 px synthetic cover (rendered at 48 px, the smallest size the renderer draws, then shrunk)."""
    return np.asarray(Image.fromarray(make_cover(genre, i, seed=7, size=48)).resize((32, 32)))


@pytest.fixture(scope="module")
def covers(tmp_path_factory) -> Path:
    """2,000 synthetic 32 px covers in per-genre folders, plus two broken images and a file that is no image."""
    root = tmp_path_factory.mktemp("score-covers")
    for i in range(N):
        genre = GENRES[i % 4]
        (root / genre).mkdir(exist_ok=True)
        (root / genre / f"{i:05d}.png").write_bytes(encode(tiny(genre, i), "PNG"))
    (root / "Rock" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "Pop" / "empty.png").write_bytes(b"")
    (root / "README.txt").write_text("not a cover")
    return root


def score_args(model: str, covers: Path, out: Path) -> list[str]:
    return ["score", "--model", model, "--input", str(covers), "--output", str(out), "--chunk_size", str(CHUNK),
            "--experiment", "scoring"]


def done_chunks(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["done"]
    except (OSError, ValueError):
        return {}


def test_score_killed_halfway_resumes_and_scores_every_cover_once(rf_champion, covers, tmp_path, capsys):
    out, n_chunks, env = tmp_path / "predictions", -(-(N + 2) // CHUNK), rf_champion["env"]
    cmd = [script("genreclf"), *score_args(rf_champion["model"], covers, out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(done_chunks(out)) < n_chunks // 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = done_chunks(out)
    assert 0 < len(before) < n_chunks, f"not killed halfway ({len(before)} of {n_chunks} chunks done)"
    stamps = {k: (out / f"part-{int(k):05d}.parquet").stat().st_mtime_ns for k in before}

    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{len(before) * CHUNK}/{N + 2}" in res.stderr  # the progress bar starts where the kill left it
    assert {k: (out / f"part-{int(k):05d}.parquet").stat().st_mtime_ns for k in before} == stamps  # not re-scored

    preds = read_predictions(out)
    expected = {f"{g}/{i:05d}.png" for i in range(N) for g in [GENRES[i % 4]]}
    assert len(preds) == N and set(preds["id"]) == expected  # every cover exactly once
    assert set(preds.columns) == {"id", "genre", *[f"p_{g}" for g in GENRES]}
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
    model = mlflow.pyfunc.load_model(rf_champion["model"])
    direct = model.predict(pd.DataFrame({"image": [(covers / i).read_bytes() for i in sample["id"]]}))
    assert list(direct["genre"]) == list(sample["genre"])

    # the same output folder for another input: refused by name, nothing mixed in (in-process: no new interpreter)
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (other / "x" / "a.png").write_bytes(encode(tiny("Rock", 1), "PNG"))
    with pytest.MonkeyPatch.context() as mp:
        for k in ("MLFLOW_TRACKING_URI", "GENRECLF_CACHE"):
            mp.setenv(k, env[k])
        mp.chdir(tmp_path)
        capsys.readouterr()
        assert cli.main(score_args(rf_champion["model"], other, out)) == 2
    err = capsys.readouterr().err
    assert "holds predictions of another scoring job" in err and "Traceback" not in err
    assert len(read_predictions(out)) == N and "x/a.png" not in set(read_predictions(out)["id"])
