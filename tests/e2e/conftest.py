"""Fixtures of the end-to-end tests: the console script, and the session's engines outside Python: one PostgreSQL
cluster, one `mlflow server` on it, and one small registered RF @champion shared by the scoring tests."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import isolated_store, missing_engine, script, subprocess_env
from pg import Cluster, TrackingServer, pg_bin

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.entrypoints import train
from genreclf.tracking import registry


@pytest.fixture
def genreclf_cmd():
    """The installed console script of this interpreter's environment."""
    return [script("genreclf")]


@pytest.fixture(scope="session")
def postgres():
    if pg_bin() is None:
        missing_engine("PostgreSQL server binaries not installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="genreclf-pg-"))  # not under /tmp/pytest-of-root: postgres must enter it
    cluster = Cluster(root).start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tracking_server(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    server = TrackingServer(postgres.create_database("mlflow"), root / "artifacts", root / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rf_champion(tmp_path_factory, session_store):
    """A SQLite store holding a small RF registered as @champion; ``env`` for processes that use it."""
    root = tmp_path_factory.mktemp("champion")
    cache = session_store / "cache"
    with isolated_store(root, cache):
        rf = train.main(C.Resolved("train_rf", C.resolve(
            None, {"data": "synthetic:12", "cache_size": 64, "n_estimators": 20, "n_jobs": 1}, "data", "rf")))
        registry.set_alias(RF_MODEL_NAME, "champion", rf["model_version"])
    env = subprocess_env(f"sqlite:///{root / 'mlflow.db'}", cache, PYSPARK_PYTHON=sys.executable,
                         PYSPARK_DRIVER_PYTHON=sys.executable)
    return {"root": root, "env": env, "model": f"models:/{RF_MODEL_NAME}@champion"}
