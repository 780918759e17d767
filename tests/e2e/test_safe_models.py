"""Registered models load without unpickling, a logged run config holds no storage password, telemetry is off."""
from __future__ import annotations

import json
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
from helpers import ROOT, isolated_store

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.entrypoints import train
from genreclf.models.persist import FOREST_TYPES, UntrustedModelFile, load_estimator
from genreclf.tracking import runs as tracking

DATA = {"data": "synthetic:6", "genres": "Rock,Jazz,Pop", "cache_size": 32}


class Foreign:
    """A type no forest contains: loading a file that needs it must be refused."""

    def __init__(self):
        self.payload = "anything"


@pytest.fixture(scope="module")
def logged(tmp_path_factory, session_store):
    root = tmp_path_factory.mktemp("safe-models")
    with isolated_store(root, session_store / "cache") as env:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = C.resolve(None, {**DATA, "n_estimators": 10}, "data", "rf")
            result = train.main(C.Resolved("train_rf", cfg))
        local = Path(mlflow.artifacts.download_artifacts(result["model_uri"], dst_path=str(root / "model")))
        yield {"root": root, "env": env, "result": result, "local": local,
               "warnings": [str(w.message) for w in caught]}


def test_model_is_code_plus_data_files_and_logging_warns_nothing(logged):
    files = {p.relative_to(logged["local"]).as_posix() for p in logged["local"].rglob("*") if p.is_file()}
    assert "python_model.pkl" not in files and not any(f.endswith((".pkl", ".joblib")) for f in files)
    assert "code_model.py" in files and any(f.endswith("meta.json") for f in files)
    assert any(f.endswith("random_forest.skops") for f in files)
    mlmodel = yaml.safe_load((logged["local"] / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("code_model.py")
    noisy = [w for w in logged["warnings"] if "type hint" in w.lower() or "cloudpickle" in w.lower()]
    assert not noisy, noisy


# One fresh interpreter (the costly part: importing mlflow, torch and genreclf) observes three things that
# only show in a new process: the pyfunc classes' definition-time warnings, MLflow's import-time
# telemetry decision and loading the registered model with pickle deserialization off.
FRESH = """
import json, os, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    # importing a pyfunc module imports mlflow: telemetry is decided here
    import genreclf.serving.cover_model
    ours = sum("type hints" in str(w.message) for w in caught)
    import mlflow
    class NoHints(mlflow.pyfunc.PythonModel):  # the control: MLflow warns about this one
        def predict(self, context, model_input, params=None):
            return model_input
    control = sum("type hints" in str(w.message) for w in caught) - ours
import pandas as pd
from mlflow.telemetry.client import get_telemetry_client
from mlflow.telemetry.utils import _is_ci_env_or_testing
model = mlflow.pyfunc.load_model(sys.argv[1])
genre = model.predict(pd.DataFrame({"image": [open(sys.argv[2], "rb").read()]}))["genre"][0]
print(json.dumps({"hints": [ours, control], "genre": genre, "ci": _is_ci_env_or_testing(),
                  "telemetry_client": get_telemetry_client() is not None,
                  "env": [os.environ["MLFLOW_DISABLE_TELEMETRY"], os.environ["DO_NOT_TRACK"]]}))
"""
# MLflow also turns telemetry off under pytest or CI: the fresh process must not look like either,
# or the telemetry check could not fail
NOT_CI = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TRAVIS",
          "CIRCLECI", "TF_BUILD", "TEAMCITY_VERSION", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}


@pytest.fixture(scope="module")
def fresh(logged):
    home = logged["root"] / "home"
    home.mkdir()
    cover = logged["root"] / "cover.png"
    cover.write_bytes(encode(make_cover("Pop", 801), "PNG"))
    env = {**{k: v for k, v in os.environ.items() if k not in NOT_CI}, **logged["env"], "HOME": str(home),
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", FRESH, f"models:/{RF_MODEL_NAME}/1", str(cover)], env=env,
                         cwd=logged["root"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return {"home": home, **json.loads(out.stdout.strip().splitlines()[-1])}


def test_model_loads_and_predicts_with_pickle_deserialization_off(fresh):
    assert fresh["genre"] in {"Rock", "Jazz", "Pop"}


def test_pyfunc_classes_have_the_type_hints_mlflow_asks_for(fresh):
    """MLflow warns when a PythonModel subclass is *defined* without hints; the control class does warn."""
    assert fresh["hints"] == [0, 1]


def test_importing_genreclf_turns_telemetry_off(fresh):
    assert fresh["ci"] is False  # else MLflow would be off for another reason
    assert fresh["env"] == ["true", "true"] and fresh["telemetry_client"] is False
    assert not (fresh["home"] / ".config" / "mlflow").exists()


def test_users_own_telemetry_choice_is_kept():
    code = "import os, genreclf; print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DO_NOT_TRACK'])"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "false", "DO_NOT_TRACK": "false", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["false", "false"], out.stderr[-1500:]


def test_skops_file_with_foreign_types_is_refused(logged, tmp_path, monkeypatch):
    (skops_file,) = logged["local"].rglob("random_forest.skops")
    forest = load_estimator(str(skops_file), FOREST_TYPES)
    assert forest.predict_proba(np.zeros((1, forest.n_features_in_))).shape[1] == 3
    evil = tmp_path / "evil.skops"
    skops_io.dump({"forest": forest, "extra": Foreign()}, evil)
    with pytest.raises(UntrustedModelFile, match="refusing to load types"):
        load_estimator(str(evil), FOREST_TYPES)
    with pytest.raises(UntrustedModelFile, match="not a .skops file"):
        load_estimator(str(tmp_path / "old.joblib"), FOREST_TYPES)


def test_run_config_has_no_storage_password(workdir):
    tune = C.build(C.TuneConfig, None, {"storage": "postgresql://optuna:hunter2@127.0.0.1:5432/optuna"})
    tracking.configure("redaction")
    with tracking.start_run("redaction", "tune_rf", "rf") as run_id:
        tracking.log_config(C.Resolved("tune_rf", {"tune": tune}))
    text = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/config.yaml")).read_text()
    assert "hunter2" not in text and "optuna:***@127.0.0.1" in text
