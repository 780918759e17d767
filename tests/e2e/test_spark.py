"""Spark scoring: the documented `spark-submit genreclf/cli.py score --engine spark` on
local[2] scores covers with the registered model through `mlflow.pyfunc.spark_udf`: the same
predictions as `pyfunc.predict`, a broken file skipped and counted, the summary logged to MLflow."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from helpers import ROOT, missing_engine, script

from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover

pytestmark = pytest.mark.slow
GENRES = ["HipHop", "Rock", "Pop", "Electronic"]
N = 16


def test_spark_submit_scores_like_pyfunc(rf_champion, tmp_path):
    if shutil.which("java") is None:
        missing_engine("Spark needs a Java runtime: apt-get install default-jre-headless")
    covers = tmp_path / "covers"
    for i in range(N):
        (covers / GENRES[i % 4]).mkdir(parents=True, exist_ok=True)
        (covers / GENRES[i % 4] / f"{i:03d}.png").write_bytes(encode(make_cover(GENRES[i % 4], i, size=48), "PNG"))
    (covers / "Rock" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "spark-predictions"
    # one shuffle partition per core instead of 200: the summary's groupBy runs on a handful of rows
    cmd = [script("spark-submit"), "--master", "local[2]", "--driver-memory", "1g",
           "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false",
           str(ROOT / "genreclf" / "cli.py"), "score", "--engine", "spark", "--model", rf_champion["model"],
           "--input", str(covers), "--output", str(out), "--experiment", "spark-scoring"]
    res = subprocess.run(cmd, cwd=tmp_path, env=rf_champion["env"], capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]

    spark = pd.read_parquet(out).sort_values("id").reset_index(drop=True)
    assert len(spark) == N and spark["id"].str.startswith("file:").all()
    local = [Path(i.removeprefix("file:")) for i in spark["id"]]
    mlflow.set_tracking_uri(rf_champion["env"]["MLFLOW_TRACKING_URI"])
    direct = mlflow.pyfunc.load_model(rf_champion["model"]).predict(
        pd.DataFrame({"image": [p.read_bytes() for p in local]}))
    assert list(spark["genre"]) == list(direct["genre"])
    probs = [c for c in direct.columns if c.startswith("p_")]
    assert (spark[probs] - direct[probs]).abs().to_numpy().max() < 1e-9

    run = mlflow.search_runs(experiment_names=["spark-scoring"], output_format="list")
    assert len(run) == 1 and run[0].info.status == "FINISHED" and run[0].data.tags["engine"] == "spark"
    m = run[0].data.metrics
    assert m["n_scored"] == N and m["n_skipped"] == 1
    assert {k[6:]: int(v) for k, v in m.items() if k.startswith("count_")} == spark["genre"].value_counts().to_dict()
