"""The REST part of ``bench``: ``mlflow models serve`` on loopback under a bounded load from a second process.

    python -m genreclf.bench.load URL BODY --requests 64 --clients 4 --cap 60

The load client runs as its own process (so the server's Python and the client's do not share a
GIL or a core budget in one interpreter): a fixed number of POST /invocations from a few concurrent
connections, stopped at a time cap; it prints one JSON line of results.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from genreclf.serving.net import free_port
from genreclf.serving.payloads import payload


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def rest_load(uri: str, blobs: list[bytes], b) -> dict:
    """Start ``mlflow models serve`` on 127.0.0.1 and load it from a second process with a fixed request count."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps(payload(blobs[:1])))
        log = open(Path(tmp) / "server.log", "w")
        # mlflow execs `uvicorn` by name: this interpreter's environment must come first on PATH
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server, timeout=b.rest_start_timeout, log=Path(tmp) / "server.log")
            out = subprocess.run([sys.executable, "-m", "genreclf.bench.load", url, str(body),
                                  "--requests", str(b.rest_requests), "--clients", str(b.rest_clients),
                                  "--cap", str(b.rest_time_cap)], capture_output=True, text=True,
                                 timeout=b.rest_time_cap + 60)
            if out.returncode:
                raise RuntimeError(f"REST load client failed: {out.stderr[-2000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


def wait_ready(url: str, server: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited ({server.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow models serve not ready after {timeout}s: {log.read_text()[-2000:]}")


def load_client(url: str, body_path: str, requests: int, clients: int, cap: float) -> dict:
    """Send ``requests`` POST /invocations with ``clients`` concurrent connections, stopping at ``cap`` s."""
    body = Path(body_path).read_bytes()
    deadline = time.time() + cap

    def one(_):
        if time.time() > deadline:
            return None
        req = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
                ok = r.status == 200
        except OSError:
            ok = False
        return time.perf_counter() - t, ok
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = [r for r in pool.map(one, range(requests)) if r is not None]
    wall = time.perf_counter() - start
    lat = [t for t, ok in done if ok] or [float("nan")]
    return {"sent": len(done), "ok": sum(ok for _, ok in done), "wall_s": wall,
            "requests_per_s": len(done) / wall, "p50_ms": 1000 * percentile(lat, 50),
            "p95_ms": 1000 * percentile(lat, 95)}


def main(argv: list[str] | None = None) -> None:
    """The REST load client, run as its own process."""
    p = argparse.ArgumentParser(prog="genreclf.bench.load")
    p.add_argument("url")
    p.add_argument("body")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--cap", type=float, default=60)
    a = p.parse_args(argv)
    print(json.dumps(load_client(a.url, a.body, a.requests, a.clients, a.cap)))


if __name__ == "__main__":
    main()
