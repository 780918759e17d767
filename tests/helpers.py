"""What many tests need, imported normally (``from helpers import ...``; ``tests/`` is on pytest's
``pythonpath``): where the repository is, the console scripts of this interpreter's environment,
a free loopback port, and a store of their own for tests and the subprocesses they start."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from genreclf.serving.net import free_port  # one implementation, shared with the bench

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"  # screenshots and other files a person may want to look at
BIN = Path(sys.executable).parent  # the console scripts (mlflow, genreclf) of this environment
# mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID; a leftover one breaks later `mlflow run`s
MLFLOW_RUN_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def missing_engine(what: str) -> None:
    """An engine a test needs (PostgreSQL, Java) is not installed: in CI that fails the run, since
    `make test` installs it; elsewhere the test is skipped, with the reason in the summary (-ra)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (make test installs it when run as root)")
    pytest.skip(what)


def script(name: str) -> str:
    """The path of a console script installed next to this interpreter (never a hard-coded venv)."""
    return str(BIN / name)


def store_env(tracking_uri: str, cache: Path, **extra: str) -> dict[str, str]:
    """The variables that give a process its own MLflow store and the shared cover cache, offline."""
    return {"MLFLOW_TRACKING_URI": tracking_uri, "GENRECLF_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
            "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false", **extra}


def subprocess_env(tracking_uri: str, cache: Path, **extra: str) -> dict[str, str]:
    """os.environ for a child process (``mlflow run``, a server): its own store, this environment's
    console scripts first on PATH, and none of the run variables earlier in-process runs exported."""
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_RUN_ENV}
    return {**env, **store_env(tracking_uri, cache, **extra),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@contextlib.contextmanager
def isolated_store(root: Path, cache: Path, **extra: str) -> Iterator[dict[str, str]]:
    """chdir to ``root`` with its own SQLite MLflow store (also for module-scoped fixtures); yields the env."""
    env = store_env(f"sqlite:///{root / 'mlflow.db'}", cache, **extra)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for k, v in env.items():
            mp.setenv(k, v)
        for k in MLFLOW_RUN_ENV:  # set+del, so the exit restores the state before, not what runs leave
            mp.setenv(k, "")
            mp.delenv(k)
        import mlflow
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        try:
            yield env
        finally:
            while mlflow.active_run():
                mlflow.end_run()


@contextlib.contextmanager
def model_server(model_uri: str, env: dict[str, str], root: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mlflow models serve -m model_uri` (one worker, pickle loading off) on a free loopback port,
    its log in ``root/serve.log``; yields (URL, process) once /ping answers, and stops the whole
    process group (uvicorn included) on exit."""
    port = free_port()
    log = open(root / "serve.log", "w")
    env = {**env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}  # models-from-code + skops
    proc = subprocess.Popen([script("mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping within 120 s"
            time.sleep(0.5)
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
