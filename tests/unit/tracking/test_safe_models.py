"""Registered models load without unpickling (probe 11), configs are redacted (12), telemetry is off (13)."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
import skops.io as skops_io
import yaml

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.rf.forest import load_estimator

DATA = {"data": "synthetic:6", "genres": "Rock,Jazz,Pop", "cache_size": 32}


class Foreign:
    """A type no forest contains: loading a file that needs it must be refused."""

    def __init__(self):
        self.payload = "anything"


@pytest.fixture(scope="module")
def logged(tmp_path_factory, session_store):
    from conftest import isolated_store

    from genreclf.rf import forest
    root = tmp_path_factory.mktemp("safe-models")
    with isolated_store(root, session_store / "cache") as env:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = C.resolve(None, {**DATA, "n_estimators": 10}, "data", "rf")
            result = forest.train_main(C.Resolved("train_rf", cfg))
        local = Path(mlflow.artifacts.download_artifacts(result["model_uri"], dst_path=str(root / "model")))
        yield {"root": root, "env": env, "result": result, "local": local,
               "warnings": [str(w.message) for w in caught]}


def test_model_is_code_plus_data_files_and_logging_warns_nothing(logged):
    files = {p.relative_to(logged["local"]).as_posix() for p in logged["local"].rglob("*") if p.is_file()}
    assert "python_model.pkl" not in files and not any(f.endswith((".pkl", ".joblib")) for f in files)
    assert "rf.py" in files and any(f.endswith("random_forest.skops") for f in files)
    mlmodel = yaml.safe_load((logged["local"] / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("rf.py")
    noisy = [w for w in logged["warnings"] if "type hint" in w.lower() or "cloudpickle" in w.lower()]
    assert not noisy, noisy


def test_model_loads_and_predicts_with_pickle_deserialization_off(logged):
    code = ("import pandas as pd, sys, mlflow; m = mlflow.pyfunc.load_model(sys.argv[1]); "
            "print(m.predict(pd.DataFrame({'image': [open(sys.argv[2], 'rb').read()]}))['genre'][0])")
    cover = logged["root"] / "cover.png"
    cover.write_bytes(encode(make_cover("Pop", 801), "PNG"))
    env = {**os.environ, **logged["env"], "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    out = subprocess.run([sys.executable, "-c", code, f"models:/{RF_MODEL_NAME}/1", str(cover)], env=env,
                         cwd=logged["root"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in {"Rock", "Jazz", "Pop"}


def test_skops_file_with_foreign_types_is_refused(logged, tmp_path):
    (skops_file,) = logged["local"].rglob("random_forest.skops")
    forest = load_estimator(str(skops_file))
    assert forest.predict_proba(np.zeros((1, forest.n_features_in_))).shape[1] == 3
    evil = tmp_path / "evil.skops"
    skops_io.dump({"forest": forest, "extra": Foreign()}, evil)
    with pytest.raises(RuntimeError, match="refusing to load types"):
        load_estimator(str(evil))
    with pytest.raises(RuntimeError, match="is a pickle"):
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
        try:
            load_estimator(str(tmp_path / "old.joblib"))
        finally:
            del os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"]


def test_run_config_has_no_storage_password(workdir):
    from genreclf.tracking import runs as tracking
    tune = C.build(C.TuneConfig, None, {"storage": "postgresql://optuna:hunter2@127.0.0.1:5432/optuna"})
    tracking.configure("redaction")
    with tracking.start_run("redaction", "tune_rf", "rf") as run_id:
        tracking.log_config(C.Resolved("tune_rf", {"tune": tune}))
    text = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/config.yaml")).read_text()
    assert "hunter2" not in text and "optuna:***@127.0.0.1" in text


def test_cli_turns_telemetry_off_unless_the_user_chose(tmp_path):
    code = ("import os; from genreclf import cli; cli.main(['predict', '--model', 'x', '/dev/null']); "
            "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DO_NOT_TRACK'])")
    base = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    out = subprocess.run([sys.executable, "-c", code], env={**base, "HOME": str(tmp_path)}, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == ["true", "true"], out.stderr[-1500:]
    assert not (tmp_path / ".config" / "mlflow").exists()
    out = subprocess.run([sys.executable, "-c", code], env={**base, "MLFLOW_DISABLE_TELEMETRY": "false"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[0] == "false"  # the user's own choice is kept


def test_pyfunc_classes_have_the_type_hints_mlflow_asks_for():
    """MLflow warns when a PythonModel subclass is *defined* without hints: check in a fresh process,
    next to a control class without hints that does warn."""
    code = """
import warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import genreclf.rf.forest, genreclf.cnn.model
    ours = sum("type hints" in str(x.message) for x in w)
    import mlflow
    class NoHints(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input
    print(ours, sum("type hints" in str(x.message) for x in w) - ours)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert out.stdout.split() == ["0", "1"], out.stderr[-1500:]
