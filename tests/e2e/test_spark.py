"""Issue 15: Spark scoring - the documented `spark-submit ... genreclf/serving/spark_score.py` on local[2]
scores covers with the registered model through `mlflow.pyfunc.spark_udf`: the same predictions as
`pyfunc.predict`, a broken file skipped and counted, the summary logged to MLflow."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from conftest import MLFLOW_RUN_ENV, isolated_store

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GENRES = ["HipHop", "Rock", "Pop", "Electronic"]
MODEL = f"models:/{RF_MODEL_NAME}@champion"


@pytest.fixture(scope="module")
def champion(tmp_path_factory, session_store):
    from genreclf.rf import forest
    from genreclf.tracking import runs as tracking
    root = tmp_path_factory.mktemp("spark")
    with isolated_store(root, session_store / "cache") as env:
        rf = forest.train_main(C.Resolved("train_rf", C.resolve(
            None, {"data": "synthetic:12", "cache_size": 64, "n_estimators": 20, "n_jobs": 1}, "data", "rf")))
        tracking.set_alias(RF_MODEL_NAME, "champion", rf["model_version"])
    clean = {k: v for k, v in os.environ.items() if k not in MLFLOW_RUN_ENV}
    return {"root": root, "env": {**clean, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                  "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}}


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (make test installs one)")
def test_spark_submit_scores_like_pyfunc(champion):
    covers = champion["root"] / "covers"
    for i in range(48):
        (covers / GENRES[i % 4]).mkdir(parents=True, exist_ok=True)
        (covers / GENRES[i % 4] / f"{i:03d}.png").write_bytes(encode(make_cover(GENRES[i % 4], i, size=48), "PNG"))
    (covers / "Rock" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = champion["root"] / "spark-predictions"
    cmd = [str(BIN / "spark-submit"), "--master", "local[2]", "--driver-memory", "1g",
           str(ROOT / "genreclf" / "serving" / "spark_score.py"), "--model", MODEL, "--input", str(covers),
           "--output", str(out), "--experiment", "spark-scoring"]
    res = subprocess.run(cmd, cwd=champion["root"], env=champion["env"], capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]

    spark = pd.read_parquet(out).sort_values("id").reset_index(drop=True)
    assert len(spark) == 48 and spark["id"].str.startswith("file:").all()
    local = [Path(i.removeprefix("file:")) for i in spark["id"]]
    mlflow.set_tracking_uri(champion["env"]["MLFLOW_TRACKING_URI"])
    direct = mlflow.pyfunc.load_model(MODEL).predict(pd.DataFrame({"image": [p.read_bytes() for p in local]}))
    assert list(spark["genre"]) == list(direct["genre"])
    probs = [c for c in direct.columns if c.startswith("p_")]
    assert (spark[probs] - direct[probs]).abs().to_numpy().max() < 1e-9

    run = mlflow.search_runs(experiment_names=["spark-scoring"], output_format="list")
    assert len(run) == 1 and run[0].info.status == "FINISHED" and run[0].data.tags["engine"] == "spark"
    m = run[0].data.metrics
    assert m["n_scored"] == 48 and m["n_skipped"] == 1
    assert {k[6:]: int(v) for k, v in m.items() if k.startswith("count_")} == spark["genre"].value_counts().to_dict()
