"""The team server of docs/scaling.md with authentication: `mlflow server --app-name basic-auth` on PostgreSQL
(tracking and user databases both there), bound to 127.0.0.1.

The recipe's steps, in order: the admin's bootstrap password is changed first (and stops working); a
trainer with EDIT on the experiment and the registered model runs `genreclf train_rf` with nothing but
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, and its run and registered version appear; a
reader with READ on the registered model and its experiment downloads the model (what a serving host
needs) but can neither create a version nor move @champion (403), nor manage users; a client without
credentials gets 401 (the health check alone stays open).
"""
from __future__ import annotations

import secrets
from pathlib import Path

import mlflow
import pytest
import requests
from helpers import MLFLOW_RUN_ENV
from mlflow.server.auth.client import AuthServiceClient
from pg import TrackingServer

from genreclf import RF_MODEL_NAME, cli

pytestmark = pytest.mark.slow
EXP = "auth-team"
ADMIN, BOOTSTRAP, ADMIN_PW = "admin", "bootstrap-" + secrets.token_hex(8), "rotated-" + secrets.token_hex(8)
TRAINER, TRAINER_PW = "trainer", "trainer-" + secrets.token_hex(8)
READER, READER_PW = "reader", "reader-" + secrets.token_hex(8)


def auth_config(path: Path, database_uri: str) -> Path:
    """The auth app's configuration: no permission unless granted (least permission), users in PostgreSQL."""
    path.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                    f"database_uri = {database_uri}\nadmin_username = {ADMIN}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                    "auth_cache_ttl_seconds = 60\n")
    return path


@pytest.fixture
def auth_server(postgres, tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    config = auth_config(root / "basic_auth.ini", postgres.create_database("auth_users"))
    # the bootstrap password comes from the environment, once: the recipe's first step replaces it
    server = TrackingServer(postgres.create_database("auth_mlflow"), root / "artifacts", root / "server.log",
                            "--app-name", "basic-auth", MLFLOW_AUTH_CONFIG_PATH=str(config),
                            MLFLOW_AUTH_ADMIN_PASSWORD=BOOTSTRAP, MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def login(monkeypatch, user: str, password: str) -> None:
    """Act as ``user`` from now on: MLflow's clients read these variables on every request."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def status(method: str, url: str, auth: tuple[str, str] | None = None, **kwargs) -> int:
    return requests.request(method, url, auth=auth, timeout=30, **kwargs).status_code


def rotate_admin_and_grant(uri: str, monkeypatch) -> str:
    """The recipe as the admin: change the bootstrap password, create the users, create the experiment and
    the registered model and grant each user the least it needs. Returns the experiment id."""
    login(monkeypatch, ADMIN, BOOTSTRAP)
    auth = AuthServiceClient(uri)
    auth.update_user_password(ADMIN, ADMIN_PW, current_password=BOOTSTRAP)
    login(monkeypatch, ADMIN, ADMIN_PW)
    auth.create_user(TRAINER, TRAINER_PW)
    auth.create_user(READER, READER_PW)
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    client.create_registered_model(RF_MODEL_NAME)
    auth.grant_user_permission(TRAINER, "experiment", exp_id, "EDIT")
    auth.grant_user_permission(TRAINER, "registered_model", RF_MODEL_NAME, "EDIT")
    auth.grant_user_permission(READER, "registered_model", RF_MODEL_NAME, "READ")
    # a version's files are the logged model's, stored under its experiment: loading it needs READ there too
    auth.grant_user_permission(READER, "experiment", exp_id, "READ")
    return exp_id


def train_as_trainer(uri: str, folder: Path, monkeypatch) -> None:
    """`genreclf train_rf` from its own folder and cover cache, with only the server's URI and credentials."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("GENRECLF_CACHE", str(folder / "cache"))
    for k in MLFLOW_RUN_ENV:  # set+del, so the test's end restores what was there, not what the run leaves
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    login(monkeypatch, TRAINER, TRAINER_PW)
    argv = ["train_rf", "--data", "synthetic:8", "--cache_size", "32", "--n_estimators", "10", "--n_jobs", "1",
            "--experiment", EXP]
    assert cli.main(argv) == 0
    while mlflow.active_run():
        mlflow.end_run()


def test_team_server_with_authentication(auth_server, tmp_path, monkeypatch):
    uri = auth_server.uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=10"
    assert status("GET", f"{uri}/health") == 200
    assert status("GET", search) == 401  # anonymous: nothing without credentials

    exp_id = rotate_admin_and_grant(uri, monkeypatch)
    assert status("GET", search, (ADMIN, BOOTSTRAP)) == 401  # the bootstrap password is gone
    assert status("GET", search, (ADMIN, ADMIN_PW)) == 200

    train_as_trainer(uri, tmp_path / "trainer", monkeypatch)
    login(monkeypatch, ADMIN, ADMIN_PW)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([exp_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    versions = client.search_model_versions(f"name = '{RF_MODEL_NAME}'")
    assert [v.run_id for v in versions] == [runs[0].info.run_id]
    assert client.get_model_version_by_alias(RF_MODEL_NAME, "challenger").version == versions[0].version
    assert runs[0].info.artifact_uri.startswith("mlflow-artifacts:")  # artifacts went through the server

    reader_can_read_but_not_write(uri, versions[0], tmp_path / "reader", monkeypatch)
    login(monkeypatch, ADMIN, ADMIN_PW)  # nothing the reader tried happened
    assert len(client.search_model_versions(f"name = '{RF_MODEL_NAME}'")) == 1
    assert "champion" not in client.get_registered_model(RF_MODEL_NAME).aliases


def reader_can_read_but_not_write(uri: str, version, folder: Path, monkeypatch) -> None:
    """READ on the registered model and its experiment: it downloads the model (what a serving host does) and
    is refused the rest."""
    reader, api = (READER, READER_PW), f"{uri}/api/2.0/mlflow"
    assert status("GET", f"{api}/registered-models/get", reader, params={"name": RF_MODEL_NAME}) == 200
    new_version = {"name": RF_MODEL_NAME, "source": version.source, "run_id": version.run_id}
    assert status("POST", f"{api}/model-versions/create", reader, json=new_version) == 403
    champion = {"name": RF_MODEL_NAME, "alias": "champion", "version": version.version}
    assert status("POST", f"{api}/registered-models/alias", reader, json=champion) == 403
    assert status("POST", f"{api}/users/create", reader, json={"username": "mallory", "password": "x" * 16}) == 403
    login(monkeypatch, READER, READER_PW)
    with pytest.raises(mlflow.exceptions.MlflowException, match="(?i)permission"):
        mlflow.MlflowClient(uri).set_registered_model_alias(RF_MODEL_NAME, "champion", version.version)
    local = mlflow.artifacts.download_artifacts(f"models:/{RF_MODEL_NAME}/{version.version}", dst_path=str(folder))
    assert (Path(local) / "MLmodel").is_file()
