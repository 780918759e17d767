"""train_ensemble end to end: trains, registers album-genre-ensemble as @challenger, predicts encoded bytes
through pyfunc like the other models, promote (model_name=all) takes it, and `mlflow models serve`
answers REST requests with the same predictions."""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import model_server, subprocess_env
from mlflow.exceptions import MlflowException

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.data.images import encode
from genreclf.entrypoints import promote, train
from genreclf.models import FAMILIES
from genreclf.serving.payloads import payload

DATA = {"data": "synthetic:14", "genres": "HipHop,Rock,Jazz", "cache_size": 48, "experiment": "ensemble-test"}
ENSEMBLE = FAMILIES["ensemble"].model_name


def test_train_register_predict_and_promote(workdir):
    result = train.main(C.Resolved("train_ensemble", C.resolve(None, {**DATA, "n_jobs": 1}, "data", "ensemble")))
    assert str(result["model_version"]) == "1" and result["test_accuracy"] > 0.6
    client = mlflow.MlflowClient()
    assert {k: str(v) for k, v in client.get_registered_model(ENSEMBLE).aliases.items()} == {"challenger": "1"}

    covers = load_covers(C.DataConfig(**{k: v for k, v in DATA.items()}), progress=False)
    test = covers.indices("test")
    model = mlflow.pyfunc.load_model(f"models:/{ENSEMBLE}@challenger")
    assert len(model.unwrap_python_model().predictor.ensemble.members()) == 3  # both forests and the SVM came back
    blobs = [encode(covers.images[i], "JPEG") for i in test]
    frame = model.predict(pd.DataFrame({"image": blobs}))
    columns = [f"p_{g}" for g in covers.genres]
    assert list(frame.columns) == ["genre", *columns]
    assert np.allclose(frame[columns].sum(axis=1), 1.0)
    assert (frame["genre"] == [covers.genres[k] for k in covers.labels[test]]).mean() > 0.6
    with pytest.raises(MlflowException, match="row 0: not a decodable image"):
        model.predict(pd.DataFrame({"image": [b"not an image"]}))

    decisions = promote.main(C.Resolved("promote", C.resolve(None, {**DATA, "model_name": "all"},
                                                                      "data", "promote")))
    assert decisions[ENSEMBLE]["decision"] == "promoted"
    aliases = client.get_registered_model(ENSEMBLE).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"challenger": "1", "champion": "1"}

    # the champion through a real model server on loopback: the REST answer is the pyfunc's answer
    env = subprocess_env(os.environ["MLFLOW_TRACKING_URI"], Path(os.environ["GENRECLF_CACHE"]))
    with model_server(f"models:/{ENSEMBLE}@champion", env, workdir) as (url, _):
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload(blobs)).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            served = pd.DataFrame(json.loads(resp.read())["predictions"])
    assert list(served["genre"]) == list(frame["genre"])
    assert np.allclose(served[columns].to_numpy(), frame[columns].to_numpy(), atol=1e-6)
