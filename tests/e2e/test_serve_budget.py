"""The model server under hostile requests: a real `mlflow models serve` of the RF champion on 127.0.0.1.

Bound stated and checked: a 16-bit 5600x5600 PNG (61 KB encoded, ~0.8 GB the old way) and a request of
100 such rows each get a 400 while the server's resident memory grows by less than 150 MB and its
CPU time by less than 3 s; errors are short, lead with the reason, echo no payload and no stack
trace; JSON that MLflow's parser chokes on (nested 1,000 deep, invalid) is a short 400 too; the
server then answers a good request.
"""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import MLFLOW_RUN_ENV, isolated_store
from PIL import Image

from genreclf import RF_MODEL_NAME
from genreclf import config as C
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.serving.contract import MAX_ROWS
from genreclf.serving.payloads import payload

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DATA = {"data": "synthetic:8", "cache_size": 64}
MEMORY_BOUND_MB, CPU_BOUND_S = 150, 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory, session_store):
    from genreclf.rf import forest
    from genreclf.tracking import registry
    root = tmp_path_factory.mktemp("serve-budget")
    with isolated_store(root, session_store / "cache") as env:
        forest.train_main(C.Resolved("train_rf", C.resolve(None, {**DATA, "n_estimators": 20}, "data", "rf")))
        registry.promote_main(C.Resolved("promote", C.resolve(None, {**DATA, "model_name": RF_MODEL_NAME},
                                                              "data", "promote")))
    clean = {k: v for k, v in os.environ.items() if k not in MLFLOW_RUN_ENV}
    env = {**clean, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}  # the models load without any pickle
    port = _free_port()
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{RF_MODEL_NAME}@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
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


def _usage(proc) -> tuple[float, float]:
    """(resident MB, CPU seconds) of the server and its workers together."""
    procs = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
    return rss, cpu


def _png16(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.uint16), "I;16").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _good() -> bytes:
    return encode(make_cover("Rock", 901), "PNG")


def test_hostile_requests_get_short_400s_within_budget_and_the_server_still_serves(served):
    url, proc = served
    assert _post(url, payload([_good()]))[0] == 200  # warm: the model and its imports are loaded
    bomb = _png16(5600)
    rss0, cpu0 = _usage(proc)
    status, body = _post(url, payload([bomb]))
    assert status == 400, body[:300]
    answer = json.loads(body)
    assert answer["message"].startswith("row 0: 5600x5600 I;16 image needs") and "stack_trace" not in answer
    status, body = _post(url, payload([bomb] * 100))
    assert status == 400 and len(body) < 1000 and "stack_trace" not in json.loads(body)
    rss1, cpu1 = _usage(proc)
    print(f"16-bit 5600^2 PNG ({len(bomb)} B) + 100-row request of it: RSS {rss0:.0f} -> {rss1:.0f} MB, "
          f"CPU {cpu1 - cpu0:.2f} s")
    assert rss1 - rss0 < MEMORY_BOUND_MB and cpu1 - cpu0 < CPU_BOUND_S

    # rows per request are capped before any decode
    status, body = _post(url, payload([_good()] * (MAX_ROWS + 1)))
    assert status == 400 and json.loads(body)["message"].startswith(f"{MAX_ROWS + 1} rows is over the limit")

    # probe 7: a bad row among large good ones: the answer is the reason only, never the payload
    big = [encode(np.random.default_rng(k).integers(0, 256, (600, 600, 3), dtype=np.uint8), "PNG") for k in range(8)]
    body_in = payload(big + [b"not an image"])
    status, body = _post(url, body_in)
    answer = json.loads(body)
    assert status == 400 and len(body) < 1000, len(body)
    assert answer["message"].startswith("row 8: not a decodable image") and "stack_trace" not in answer
    assert base64.b64encode(big[0]).decode()[:40] not in body.decode()

    # MLflow's own JSON parsing, before the model: deep nesting was a 500, invalid JSON echoed the body
    status, body = _post(url, b'{"inputs": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    assert status == 400 and "nested too deeply" in json.loads(body)["message"]
    status, body = _post(url, b'{"inputs": {"image": ["' + b"A" * 100_000 + b'"]')
    assert status == 400 and len(body) < 1000 and "valid JSON" in json.loads(body)["message"]

    status, body = _post(url, payload([_good()]))
    assert status == 200 and len(json.loads(body)["predictions"]) == 1
