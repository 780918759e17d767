"""Shared fixtures: every test runs against its own real MLflow store, cache and working dir."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"  # screenshots and other files a person may want to look at
MLFLOW_RUN_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


@contextlib.contextmanager
def isolated_store(root: Path, cache: Path, **extra: str):
    """chdir to ``root`` with its own SQLite MLflow store, for module-scoped fixtures; yields the env."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "GENRECLF_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false", **extra}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for k, v in env.items():
            mp.setenv(k, v)
        for k in MLFLOW_RUN_ENV:  # mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID: set+del so the
            mp.setenv(k, "")      # exit restores the state before the fixture, not what runs leave
            mp.delenv(k)
        import mlflow
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        yield env


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """One SQLite MLflow store + cover cache shared by the tests of a session (like a user's)."""
    root = tmp_path_factory.mktemp("store")
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch, session_store):
    """A fresh working dir with its own MLflow store (SQLite + ./mlruns) and a shared cover cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("GENRECLF_CACHE", str(session_store / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    # mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID; a leftover one breaks later `mlflow run`s
    # (setenv first, so that teardown restores 'unset' even when the test's code set it)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    import mlflow
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def genreclf_cmd():
    """The installed console script of this interpreter's environment."""
    return [str(Path(sys.executable).parent / "genreclf")]


def pytest_configure(config):
    OUTPUT.mkdir(exist_ok=True)
