"""train_rf end to end against a real MLflow store and registry, on synthetic covers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import OUTPUT, isolated_store
from mlflow.exceptions import MlflowException

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data import images
from genreclf.data.covers import load_covers
from genreclf.entrypoints import features as features_entry
from genreclf.entrypoints import train
from genreclf.models.rf import forest as baseline
from genreclf.tracking import registry

DATA = {"data": "synthetic:30", "cache_size": 64, "experiment": "rf-test"}


def resolved_for(**explicit) -> C.Resolved:
    return C.Resolved("train_rf", C.resolve(None, {**DATA, **explicit}, "data", "rf"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_store):
    """One train_rf run through the Python API, in its own store (like the `workdir` fixture)."""
    tmp = tmp_path_factory.mktemp("rf")
    with isolated_store(tmp, session_store / "cache"):
        result = train.main(resolved_for(n_estimators=150))
        covers = load_covers(C.DataConfig(**DATA), progress=False)
        yield {"result": result, "run": mlflow.MlflowClient().get_run(result["run_id"]), "covers": covers,
               "tmp": tmp, "uri": os.environ["MLFLOW_TRACKING_URI"]}


def test_run_holds_params_metrics_artifacts_inputs_and_tags(trained):
    run, genres = trained["run"], trained["covers"].genres
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    for key, value in {"n_estimators": "150", "max_depth": "20", "min_samples_leaf": "1", "max_features": "sqrt",
                       "class_weight": "balanced", "data": "synthetic:30", "cache_size": "64"}.items():
        assert params[key] == value, key
    assert "seed" in params and "feature_version" in params
    for split in ("val", "test"):
        for name in ("accuracy", "macro_f1"):
            assert 0 <= metrics[f"{split}_{name}"] <= 1
        for g in genres:
            assert f"{split}_f1_{g}" in metrics and f"{split}_recall_{g}" in metrics
    assert tags["model_family"] == "rf" and tags["entry_point"] == "train_rf"
    assert tags["mlflow.runName"] == "rf-n150-d20"
    assert tags["data_digest"] == trained["covers"].digest[:20] and len(tags["git_commit"]) == 40

    client = mlflow.MlflowClient()
    files = {a.path for d in ("eval", "importances", "data") for a in client.list_artifacts(run.info.run_id, d)}
    for f in ("eval/val_per_genre.csv", "eval/test_per_genre.csv", "eval/test_confusion_matrix.png",
              "eval/test_confusion_matrix.json", "importances/feature_importances.png",
              "importances/feature_importances.csv", "data/split_manifest.csv"):
        assert f in files, f
    cm = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="eval/test_confusion_matrix.json")).read_text())
    assert np.array(cm["counts"]).sum() == len(trained["covers"].indices("test")) and cm["genres"] == genres
    imp = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                          artifact_path="importances/feature_importances.csv"))
    assert len(imp) == 25 and {"impurity", "permutation_mean", "permutation_std"} <= set(imp.columns)
    assert abs(imp["impurity"].sum() - 1) < 1e-6
    contexts = {t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert contexts == {"training", "val", "test"}


def test_model_is_well_above_chance_on_synthetic_covers(trained):
    r = trained["result"]
    # 4 genres: chance is 0.25; the synthetic genres differ in colour, edges, texture and faces
    assert r["test_accuracy"] >= 0.6 and r["test_macro_f1"] >= 0.6, r
    assert r["val_accuracy"] >= 0.6, r


def test_version_registered_as_challenger_with_tags(trained):
    r, client = trained["result"], mlflow.MlflowClient()
    assert r["model_version"] is not None
    mv = client.get_model_version_by_alias(RF_MODEL_NAME, registry.CHALLENGER)
    assert str(mv.version) == str(r["model_version"])
    assert mv.tags["source_run_id"] == r["run_id"] and mv.tags["data_digest"] == trained["covers"].digest[:20]
    assert float(mv.tags["test_accuracy"]) == pytest.approx(r["test_accuracy"], abs=1e-4)
    assert mv.tags["genres"] == "HipHop,Rock,Pop,Electronic" and "test_macro_f1" in mv.tags


def test_registered_model_predicts_raw_bytes_in_a_fresh_process(trained):
    covers, version, tmp = trained["covers"], trained["result"]["model_version"], trained["tmp"]
    test = covers.indices("test")
    paths = []
    for i in test:
        p = tmp / f"cover{i}.jpg"
        p.write_bytes(images.encode(covers.images[i], "JPEG", 95))
        paths.append(str(p))
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('models:/{RF_MODEL_NAME}/{version}')\n"
        "rows = [open(p, 'rb').read() for p in sys.argv[1:]]\n"
        "out = m.predict(pd.DataFrame({'image': rows}))\n"
        "print('RESULT' + out.to_json(orient='records'))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"], "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    proc = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = pd.DataFrame(json.loads(proc.stdout.split("RESULT", 1)[1]))
    genres = covers.genres
    assert list(out.columns) == ["genre"] + [f"p_{g}" for g in genres] and len(out) == len(test)
    np.testing.assert_allclose(out[[f"p_{g}" for g in genres]].sum(axis=1), 1.0, atol=1e-6)
    truth = [genres[k] for k in covers.labels[test]]
    assert (out["genre"] == truth).mean() >= 0.6


def test_corrupt_or_non_image_row_is_named(trained):
    model = mlflow.pyfunc.load_model(trained["result"]["model_uri"])
    good = images.encode(trained["covers"].images[0], "PNG")
    with pytest.raises(MlflowException, match="row 1: not a decodable image"):
        model.predict(pd.DataFrame({"image": [good, b"\xff\xd8\xff\xe0 truncated jpeg"]}))
    with pytest.raises(MlflowException, match="row 2: empty input"):
        model.predict(pd.DataFrame({"image": [good, good, b""]}))
    # the python model exposes what the demo shows next to a cover
    rf = model.unwrap_python_model().predictor
    assert list(rf.genre_means.index) == trained["covers"].genres
    assert list(rf.genre_means.columns) == baseline.FEATURE_NAMES
    assert len(rf.importances) == 25 and rf.importances.iloc[0] >= rf.importances.iloc[-1]
    assert set(rf.features(trained["covers"].images[0])) == set(baseline.FEATURE_NAMES)


def test_register_false_logs_but_does_not_register(trained):
    client = mlflow.MlflowClient()  # the store of `trained` (its environment is active for the module)
    before = len(client.search_model_versions(f"name='{RF_MODEL_NAME}'"))
    result = train.main(resolved_for(n_estimators=20, max_depth=5, register="false"))
    assert result["model_version"] is None and result["model_uri"]
    assert len(client.search_model_versions(f"name='{RF_MODEL_NAME}'")) == before
    assert client.get_run(result["run_id"]).data.tags["mlflow.runName"] == "rf-n20-d5"
    assert mlflow.pyfunc.load_model(result["model_uri"]).predict(
        pd.DataFrame({"image": [images.encode(trained["covers"].images[0], "PNG")]})).shape == (1, 5)


def test_features_entry_point_logs_table_and_plots(trained):
    result = features_entry.main(C.Resolved("features", C.resolve(None, DATA, "data")))
    run_id, covers = result["run_id"], trained["covers"]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags["entry_point"] == "features" and result["n_covers"] == len(covers)
    table = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run_id,
                                                                artifact_path="features/features.parquet"))
    assert list(table.columns) == ["sample_id", "genre", "split", *baseline.FEATURE_NAMES] and len(table) == len(covers)
    assert np.isfinite(table[baseline.FEATURE_NAMES].to_numpy()).all()
    assert set(table["split"]) == {"train", "val", "test"}
    for group in baseline.FEATURE_GROUPS:
        png = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"features/dist_{group}.png"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shutil.copy(png, OUTPUT / f"rf_features_dist_{group}.png")  # for a person to look at
    png = mlflow.artifacts.download_artifacts(run_id=trained["result"]["run_id"],
                                              artifact_path="importances/feature_importances.png")
    shutil.copy(png, OUTPUT / "rf_feature_importances.png")
