"""A throwaway PostgreSQL cluster and an `mlflow server` backed by it, for end-to-end tests
(the session fixtures that start them are in ``tests/e2e/conftest.py``).

The cluster runs Debian's PostgreSQL binaries (`make test` installs the package when initdb is
missing) on a free loopback port, in a temporary folder owned by the ``postgres`` user when the
tests run as root (initdb refuses root). Whoever starts one stops it.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg2
from helpers import script, subprocess_env

from genreclf.serving.net import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """initdb + pg_ctl start on 127.0.0.1:<port>; trust authentication (loopback only, throwaway)."""

    def __init__(self, root: Path):
        bin_dir = pg_bin()
        assert bin_dir is not None
        self.bin, self.root, self.port = bin_dir, root, free_port()
        self.data, self.log = root / "data", root / "server.log"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *cmd: str) -> None:
        res = subprocess.run([*self.as_postgres, *cmd], capture_output=True, text=True, timeout=120)
        if res.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {res.stdout[-2000:]} {res.stderr[-2000:]}")

    def start(self) -> Cluster:
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        # fsync off: a throwaway cluster need not survive a power cut, and initdb/CREATE DATABASE are faster
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, db: str) -> str:
        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()
        return self.url(db)


class TrackingServer:
    """`mlflow server` on PostgreSQL with proxied artifacts (clients need no shared disk)."""

    def __init__(self, backend: str, artifacts: Path, log: Path, *args: str, **env: str):
        """``args`` are more `mlflow server` options (e.g. ``--app-name basic-auth``), ``env`` more variables of
        its environment (the auth app's configuration)."""
        self.port, self.artifacts, self.log_path, self.env = free_port(), artifacts, log, env
        self.cmd = [script("mlflow"), "server", "--backend-store-uri", backend,
                    "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", "1", *args]
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> TrackingServer:
        self._log = open(self.log_path, "w")
        env = subprocess_env(self.uri, self.artifacts.parent / "cache", **self.env)
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:  # bounded: the server migrates the fresh database first
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {timeout} s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()
